# Shrinks an SHViT ImageNet recipe (configs/cls/shvit-s*_in1k.py: DeiT
# augmentation with RandAugment, random erasing, Mixup/CutMix, repeated
# augmentation, AdamW, EMA, SHViTClsHead) for CPU tests on the generated
# ImageNet: a tiny SHViT, 64-pixel crops, 4 iterations. The tiny configs use
# these as {{_base_.tiny_*}}.
tiny_model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=[16, 24, 32], depths=[1, 1, 1],
                  partial_dims=[4, 8, 8], types=['i', 's', 's'])),
    head=dict(in_channels=32))
tiny_train_pipeline = [
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
tiny_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=73, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
tiny_train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4,
                      val_interval=4)
tiny_custom_hooks = [
    dict(type='EMAHook', momentum=0.1, priority='ABOVE_NORMAL')
]
tiny_default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4,
                    max_keep_ckpts=1, save_best=None))
