"""SHViT-S4 Mask R-CNN, 1x schedule, COCO 2017 (MMDet 3.x).

The official downstream recipe (reference: ysj9909/SHViT downstream/
configs/mask_rcnn_shvit_s4_fpn_1x_coco.py on mmdet 2.25, APb 39.0 / APm
35.9) translated to mmdet 3.x:

- backbone SHViT-S4, its three stages (strides 16, 32, 64), ImageNet
  weights from ``pretrained/shvit_s4.pth``; BatchNorm running statistics
  frozen (``norm_eval=True``), BN affine parameters and everything else
  trained;
- neck ``SHViTFPN`` (the official EfficientViTFPN design): FPN over the
  three stages + two chained 2x2 transposed convs from the merged stride-16
  lateral for strides 8 and 4: strides 4-64 for the RPN anchors, RoIAlign
  on 4-32, 256 channels;
- RPNHead, Shared2FCBBoxHead, FCNMaskHead (4 convs), mmdet's train/test
  cfgs;
- resize to 1333x800 keeping the ratio, flip 0.5, pad to a multiple of 32;
  2 images x 8 GPUs = 16;
- 12 epochs, AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05, linear
  warm-up 500 iterations from 0.001x, lr x0.1 at epochs 8 and 11, no
  gradient clipping, FP32.
"""
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
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
        num_extra_trans_convs=2))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05))
