# The SHViT-S4 ImageNet recipe (configs/cls/shvit-s4_in1k.py: DeiT
# augmentation with RandAugment, random erasing, Mixup/CutMix, repeated
# augmentation, AdamW, EMA, SHViTClsHead) shrunk for CPU tests on the
# generated ImageNet: a tiny SHViT, 64-pixel crops, 4 iterations.
_base_ = ['../../configs/cls/shvit-s4_in1k.py']
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=[16, 24, 32], depths=[1, 1, 1],
                  partial_dims=[4, 8, 8], types=['i', 's', 's'])),
    head=dict(in_channels=32))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2,
         total_level=10, magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand',
         min_area_ratio=0.02, max_area_ratio=1 / 3,
         fill_color=[103.53, 116.28, 123.675],
         fill_std=[57.375, 57.12, 58.395]),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=73, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4,
                 val_interval=4)
param_scheduler = []
auto_scale_lr = dict(enable=False)
custom_hooks = [dict(type='EMAHook', momentum=0.1, priority='ABOVE_NORMAL')]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4,
                    max_keep_ckpts=1, save_best=None))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
