"""SHViT-S4, ImageNet-1K from scratch (MMPretrain): the S1 recipe
(configs/cls/shvit-s1_in1k.py, whose docstring lists what is kept and
dropped from the official one) with S4's weight decay 0.03, trained and
tested at 256 (official ``--input-size 256``): RandomResizedCrop 256; test
resize 292 (= int(256 / 224 * 256), bicubic), center crop 256."""
_base_ = ['./shvit-s1_in1k.py']

model = dict(backbone=dict(arch='s4'), head=dict(in_channels=448))
optim_wrapper = dict(optimizer=dict(weight_decay=0.03))

img_size = 256
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, backend='pillow',
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
    dict(type='ResizeEdge', scale=292, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
