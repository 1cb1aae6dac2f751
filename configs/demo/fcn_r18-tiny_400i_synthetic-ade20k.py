"""The `make demo` job: a tiny FCN trained for 400 iterations on a
generated ADE20K (data/demo/ade, made by tools/demo.py), then evaluated.

It runs in a few minutes on two CPU cores. The generated scenes are
learnable, so the demo's mIoU and pixel accuracy rise well above chance.
"""
_base_ = [
    '../_base_/models/fcn_r18-tiny.py',
    '../_base_/datasets/ade20k_cpu-64x64.py',
    'mmseg::_base_/default_runtime.py'
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)
data_root = 'data/demo/ade/ADEChallengeData2016'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

max_iters = 400
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=3e-3, weight_decay=0.01))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
