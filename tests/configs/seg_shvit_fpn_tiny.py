# The SHViT-S4 Semantic FPN recipe (configs/seg/shvit-s4_fpn_ade20k.py)
# shrunk for CPU tests on the generated ADE20K: a tiny SHViT (stem maps 4
# and 8 channels, stages 16/24/32), a 16-channel FPN and head with plain BN,
# 64x64 crops, 4 iterations. The real AdamW and poly schedule structure stay.
_base_ = ['../../configs/seg/shvit-s4_fpn_ade20k.py']
crop_size = (64, 64)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=[16, 24, 32], depths=[1, 1, 1],
                  partial_dims=[4, 8, 8], types=['i', 's', 's']),
        init_cfg=None),
    neck=dict(in_channels=[4, 8, 16, 24, 32], out_channels=16),
    decode_head=dict(in_channels=[16] * 5, channels=16, norm_cfg=norm_cfg))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=4, val_interval=4)
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=4,
         by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=1, log_metric_by_epoch=False),
    checkpoint=dict(by_epoch=False, interval=4))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
