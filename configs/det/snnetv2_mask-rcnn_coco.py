"""SN-Netv2: DeiT3-S stitched with DeiT3-L, Mask R-CNN (ViTDet), COCO 2017.

SN-Netv2 reports COCO box/mask AP for stitched DeiT3-S/L "based on Mask
R-CNN/ViTDet", but its detection code was never released (reference:
ziplab/SN-Netv2 README). This config is therefore ViTDet's recipe (mmdet's
projects/ViTDet: vitdet_mask-rcnn_vit-b-mae_lsj-100e.py on
lsj-100e_coco-instance.py, itself detectron2's mask_rcnn_vitdet_*_100ep)
with the stitched backbone in place of the ViT.

Follows ViTDet:

- Mask R-CNN; simple feature pyramid on the last backbone map only
  (``SimpleFPN``: strides 4, 8, 16, 32 and a max-pooled 64, 256 channels,
  LayerNorm2d); RPN with 2 convs; 4conv-1fc box head and mask head with
  LayerNorm2d;
- LSJ at 1024 (flip, resize 0.1-2.0, crop 1024, pad 114), test at 1024;
  every batch padded to 1024 x 1024;
- batch 4 x 16 GPUs = 64, AdamW lr 1e-4, weight decay 0.1, mixed precision,
  layer-wise lr decay 0.7, 250 warm-up iterations, 184,375 iterations
  (100 epochs) with lr steps at 163,889 and 177,546, validation every
  5,000 iterations;
- stochastic depth with a linear ramp to 0.1 (DeiT3-S, ViTDet's ViT-B
  value) and 0.4 (DeiT3-L, ViTDet's ViT-L value).

Differs from ViTDet:

- backbone: SN-Netv2 of DeiT3-S and DeiT3-L (ImageNet-21k pretrained,
  1k fine-tuned at 224; the official deit_3_{small,large}_224_21k.pth in
  pretrained/) instead of MAE ViTs. The timm DeiT3 blocks use **global
  attention in every block and no relative position bias**: no window
  attention and no window/global interleaving as ViTDet's ViT has. The
  224-resolution absolute position embeddings are resampled to each input
  (64 x 64 tokens at 1024) at run time. Global attention over 4,096 tokens
  in every block costs far more memory and FLOPs than ViTDet-L, which has
  global attention in 4 of its 24 blocks;
- the 1/16 map fed to the pyramid is large-anchor block 23, or, for
  stitches that end in the small anchor, small block 11 projected to 1024
  channels by its S->L stitching layer (``out_indices=(23,)``);
- layer-wise lr decay over the stitched pair
  (``StitchedLayerDecayOptimWrapperConstructor``: each anchor's blocks at
  their depth within that anchor, each stitching layer between the blocks
  it joins), at ViTDet's rates: 0.7 for the 12-block anchor (ViTDet's
  ViT-B) and 0.8 for the 24-block one (ViTDet's ViT-L);
- stitching (SN-Netv2's dense-task recipe): LoRA rank 16 stitching layers,
  least-squares initialised on 50 training images (StitchingInitHook); 134
  stitches, one trained per iteration, drawn from FLOPs groups 10 GFLOPs
  apart (counted at 1024 x 1024), the same stitch on every rank; DDP needs
  ``find_unused_parameters``;
- validation evaluates a fixed set of stitches (the two anchors and the
  middle of the FLOPs range; ``StitchSweepValLoop``), each one's box and
  mask AP logged;
- no ``Fp16CompresssionHook`` (DDP fp16 gradient compression, a hook of
  the mmdet ViTDet project only).

Every stitch: ``tools/test.py CONFIG CKPT --stitch-id all`` (GFLOPs counted
at the StitchSamplingHook's 1024x1024).
"""
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance_lsj-1024.py',
    '../_base_/schedules/vitdet_lsj-100e.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)

image_size = (1024, 1024)
norm_cfg = dict(type='LayerNorm2d', eps=1e-6)  # ViTDet's LN eps
model = dict(
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[
            dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)
        ]),
    backbone=dict(
        _delete_=True,
        type='SNNetv2',
        anchors=[
            dict(model_name='deit3_small_patch16_224',
                 drop_path_rate=0.1,
                 init_cfg=dict(
                     type='Pretrained',
                     checkpoint='pretrained/deit_3_small_224_21k.pth')),
            dict(model_name='deit3_large_patch16_224',
                 drop_path_rate=0.4,
                 init_cfg=dict(
                     type='Pretrained',
                     checkpoint='pretrained/deit_3_large_224_21k.pth')),
        ],
        mode='v2',
        lora_rank=16,
        out_indices=(23, ),
        stitch_id=0),
    neck=dict(
        _delete_=True,
        type='SimpleFPN',
        backbone_channel=1024,
        in_channels=[256, 512, 1024, 1024],
        out_channels=256,
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

optim_wrapper = dict(
    constructor='StitchedLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=[0.7, 0.8]))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, save_last=True,
                    interval={{_base_.interval}}, max_keep_ckpts=5))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
custom_hooks = [
    dict(type='StitchingInitHook', num_images=50),
    dict(type='StitchSamplingHook', gap=10.0, input_shape=image_size),
]
# Each iteration trains one stitch: DDP must tolerate unused parameters.
find_unused_parameters = True
val_cfg = dict(type='StitchSweepValLoop', stitch_ids='anchors+middle')
