# ImageNet-1K with DeiT-III's "3-Augment" and simple random crop, as the
# SN-Netv2 classification recipe: resize 224 + random crop (pad 4, reflect)
# + flip, one of grayscale / solarize / Gaussian blur, ColorJitter 0.3,
# CutMix (alpha 1.0, no Mixup). Evaluation: resize 224 + center crop 224.
dataset_type = 'ImageNet'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    batch_augments=dict(augments=[dict(type='CutMix', alpha=1.0)]))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomCrop', crop_size=224, padding=4,
         padding_mode='reflect'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandomChoice',
        transforms=[
            # grayscale: colour enhancement factor 0
            [dict(type='ColorTransform', magnitude=-1.0, prob=1.0,
                  random_negative_prob=0.0)],
            [dict(type='Solarize', thr=128, prob=1.0)],
            # DeiT-III draws the blur radius in [0.1, 2.0]; fixed 1.0 here
            [dict(type='GaussianBlur', radius=1.0, prob=1.0)],
        ]),
    dict(type='ColorJitter', brightness=0.3, contrast=0.3, saturation=0.3),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(type=dataset_type, data_root='data/imagenet', split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    dataset=dict(type=dataset_type, data_root='data/imagenet', split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
