"""The `make demo` job: a tiny stitched pair trained on a generated
ImageNet (data/demo/imagenet: 10 classes, made by tools/demo.py), then every
stitch evaluated with `tools/test.py --stitch-id all`.

Two narrow DeiT-III ViTs of different depth and width (3 and 6 blocks, 48
and 64 channels), built from this config with no weights, joined by LoRA
stitching layers: 8 stitches. Training uses the real machinery: the
least-squares init of the stitching layers and FLOPs-grouped sampling. It
runs in a few minutes on two CPU cores.
"""
_base_ = [
    '../_base_/models/snnetv2_tiny_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)
data_root = 'data/demo/imagenet'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=48, crop_ratio_range=(0.6, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=48, edge='short'),
    dict(type='CenterCrop', crop_size=48),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=25, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 600
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=50,
         end=max_iters)
]
train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)

custom_hooks = [
    dict(type='StitchingInitHook', num_images=64),
    # The tiny stitches lie ~3 MFLOPs apart: a 1 MFLOP gap groups each level.
    dict(type='StitchSamplingHook', gap=0.001),
]
find_unused_parameters = True
