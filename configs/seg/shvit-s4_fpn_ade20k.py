"""SHViT-S4 Semantic FPN, ADE20K, 512x512 crops (MMSeg).

SHViT's paper has no segmentation results; this is the Semantic FPN recipe
the efficient-backbone papers use on ADE20K (PoolFormer, EfficientFormer,
RepViT: reference shvit.md section 7): the **40k** variant, i.e. 40,000
iterations at 32 images per step (4 x 8 GPUs; the same number of images as
Semantic FPN's 80k iterations at 16), AdamW lr 2e-4, weight decay 1e-4,
poly decay (power 0.9) to 0, no warm-up. Data: mmseg's ADE20K pipeline
(random resize of 2048x512 by 0.5-2.0, 512x512 crops, flip, photometric
distortion; test at 2048x512, whole image).

Model: SHViT-S4 with its stem features (``with_stem_features=True``), so
the pyramid has real stride-4 and stride-8 levels (56 and 112 channels)
below the three stages (224, 336, 448 channels at strides 16, 32, 64);
mmseg's ``FPN`` maps all five to 256 channels and ``FPNHead`` merges them
at stride 4 (128 channels). The backbone's BatchNorm running statistics
stay frozen (``norm_eval=True``: 4 images per GPU are too few for batch
statistics, as in the detection recipe); the neck and head use SyncBN.
ImageNet weights from ``pretrained/shvit_s4.pth``.
"""
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py'
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='SHViT',
        arch='s4',
        out_indices=(0, 1, 2),
        with_stem_features=True,
        norm_eval=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint='pretrained/shvit_s4.pth')),
    neck=dict(in_channels=[56, 112, 224, 336, 448], out_channels=256,
              num_outs=5),
    decode_head=dict(
        in_channels=[256] * 5,
        in_index=[0, 1, 2, 3, 4],
        feature_strides=[4, 8, 16, 32, 64],
        num_classes=150))

# 4 images per GPU x 8 GPUs = 32
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999),
                   weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000,
         by_epoch=False)
]
auto_scale_lr = dict(enable=False, base_batch_size=32)
