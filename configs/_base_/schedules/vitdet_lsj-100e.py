# ViTDet's 100-epoch LSJ schedule for batch 64 (mmdet's
# projects/ViTDet/configs/lsj-100e_coco-instance.py): AdamW lr 1e-4,
# weight decay 0.1, mixed precision, 250 warm-up iterations, lr x0.1 at
# epochs 88 and 96; 100 epochs = 184,375 iterations x 64 images / 118k.
# Validation every 5,000 iterations and at the end (the configs using
# this schedule also checkpoint every 5,000 iterations and log by
# iteration: default_hooks and log_processor belong to the runtime base).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.1))
max_iters = 184375
interval = 5000
# The last regular validation is at 180,000: validate the final model too.
dynamic_intervals = [(max_iters // interval * interval + 1, max_iters)]
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[163889, 177546], gamma=0.1)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=interval, dynamic_intervals=dynamic_intervals)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# lr 1e-4 is for 64 images per iteration; --auto-scale-lr rescales it.
auto_scale_lr = dict(enable=False, base_batch_size=64)
