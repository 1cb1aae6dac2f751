# The tiny stitched pair on (generated) ImageNet, deterministic pipeline,
# with the stitching hooks.
_base_ = [
    '../../configs/_base_/models/snnetv2_tiny_cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    './_base_/tiny_mmpretrain.py'
]
custom_imports = dict(
    imports=['flexvit_mm', 'tests.helpers.stitch_record'],
    allow_failed_imports=False)
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=48, edge='short'),
    dict(type='CenterCrop', crop_size=48),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=pipeline))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(pipeline=pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=6, val_interval=6)
default_hooks = dict(checkpoint=dict(interval=3))
custom_hooks = [
    dict(type='StitchingInitHook', num_images=8),
    dict(type='StitchSamplingHook', gap=0.0005),
    dict(type='RecordTrainStitchHook'),
]
find_unused_parameters = True
