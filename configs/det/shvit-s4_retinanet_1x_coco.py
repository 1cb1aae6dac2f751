"""SHViT-S4 RetinaNet, 1x schedule, COCO 2017 (MMDet 3.x).

The official downstream recipe (reference: ysj9909/SHViT downstream/
configs/retinanet_shvit_s4_fpn_1x_coco.py on mmdet 2.25, box AP 38.8)
translated to mmdet 3.x:

- backbone SHViT-S4, its three stages (strides 16, 32, 64; 224, 336, 448
  channels), ImageNet weights from ``pretrained/shvit_s4.pth`` (official,
  timm or converted checkpoints all load); every BatchNorm keeps its
  running statistics (``norm_eval=True``, as the official ``train()``)
  while the BN affine parameters train; nothing is frozen;
- neck ``SHViTFPN`` (the official EfficientViTFPN design): FPN over the
  three stages + one 2x2 transposed conv on the merged stride-16 lateral
  for stride 8 + one stride-2 conv on the last stage map for stride 128:
  strides 8-128 for RetinaHead's anchors, 256 channels;
- RetinaHead, focal loss and L1 box loss, mmdet's train/test cfgs;
- resize to 1333x800 keeping the ratio, flip 0.5, pad to a multiple of 32;
  2 images x 8 GPUs = 16;
- 12 epochs, AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05, linear
  warm-up 500 iterations from 0.001x, lr x0.1 at epochs 8 and 11, no
  gradient clipping, FP32.

Not carried over: the official no-decay entries for ``attention_biases``
(leftovers from LeViT that match no SHViT parameter).
"""
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='SHViT',
        arch='s4',
        out_indices=(0, 1, 2),
        frozen_stages=-1,
        norm_eval=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained/shvit_s4.pth')),
    neck=dict(
        _delete_=True,
        type='SHViTFPN',
        in_channels=[224, 336, 448],
        out_channels=256,
        num_outs=5,
        num_extra_trans_convs=1,
        add_extra_convs='on_input'))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05))
