_base_ = ['mmdet::_base_/default_runtime.py', './tiny_iter_schedule.py']
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
