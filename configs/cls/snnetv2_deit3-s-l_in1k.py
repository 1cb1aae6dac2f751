"""SN-Netv2: DeiT3-S stitched with DeiT3-L, ImageNet-1K (MMPretrain).

The paper recipe (reference: ziplab/SN-Netv2 classification/, config
deit_stitching_snnetv2_s_l.json) with the closest MMPretrain equivalents:

- anchors: DeiT-III S and L (ImageNet-21k pretrain, 1k fine-tune at 224),
  loaded from the official deit_3_{small,large}_224_21k.pth files in
  pretrained/; constant drop-path 0.05 (S) and 0.4 (L); everything is
  trained except the frozen least-squares weight W0 of the stitching layers;
- stitching layers: LoRA rank 64, least-squares initialised on 100 training
  images (StitchingInitHook);
- 134 stitches, FLOPs-grouped sampling with a 1 GFLOP gap, the same stitch on
  every rank (set ``per_rank=True`` for the official per-GPU sampling);
- 50 epochs, batch 8 x 64 = 512, LAMB (mmpretrain's ``Lamb`` in place of
  apex FusedLAMB), lr 3e-5 (not scaled), weight decay 0.02, 5 warm-up epochs
  from 1e-7 then cosine to 1e-5, mixed precision;
- 3-Augment with simple random crop, CutMix 1.0, no Mixup, label smoothing
  0.1, no random erasing, no EMA, no distillation;
- evaluation: resize 224, center crop 224; `tools/test.py CONFIG CKPT
  --stitch-id all` evaluates every stitch.

Differences: the Gaussian blur of 3-Augment uses a fixed radius 1.0 (the
official draws it in [0.1, 2.0]); the cosine schedule is per iteration.
"""
_base_ = [
    '../_base_/datasets/imagenet_bs64_3aug_224.py',
    '../_base_/schedules/imagenet_bs512_lamb_50e.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SNNetv2',
        anchors=[
            dict(model_name='deit3_small_patch16_224',
                 init_cfg=dict(
                     type='Pretrained',
                     checkpoint='pretrained/deit_3_small_224_21k.pth'),
                 drop_path_rate=0.05, constant_drop_path=True),
            dict(model_name='deit3_large_patch16_224',
                 init_cfg=dict(
                     type='Pretrained',
                     checkpoint='pretrained/deit_3_large_224_21k.pth'),
                 drop_path_rate=0.4, constant_drop_path=True),
        ],
        mode='v2',
        lora_rank=64,
        num_classes=1000,
        stitch_id=0),
    # The backbone already ends with the route's last anchor's norm and
    # head, as in the official code: the head only computes the loss.
    neck=None,
    head=dict(
        type='ClsHead',
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original'),
        topk=(1, 5)))

custom_hooks = [
    dict(type='StitchingInitHook', num_images=100),
    dict(type='StitchSamplingHook', gap=1.0, input_shape=(224, 224)),
]
# Each iteration trains one stitch: DDP must tolerate unused parameters.
find_unused_parameters = True
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5,
                                     max_keep_ckpts=3))
