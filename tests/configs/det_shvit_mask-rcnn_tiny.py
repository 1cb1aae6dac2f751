# The SHViT-S4 Mask R-CNN recipe (configs/det/shvit-s4_mask-rcnn_1x_coco.py)
# shrunk for CPU tests on the generated COCO: a tiny SHViT, 16-channel neck
# and heads, 128-pixel images, 4 iterations.
_base_ = ['../../configs/det/shvit-s4_mask-rcnn_1x_coco.py']
width = 16
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=[16, 24, 32], depths=[1, 1, 1],
                  partial_dims=[4, 8, 8], types=['i', 's', 's']),
        init_cfg=None),
    neck=dict(in_channels=[16, 24, 32], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=32),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width)),
    # an untrained model scores low: keep its detections for CocoMetric
    test_cfg=dict(rcnn=dict(score_thr=0.0)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# 4 iterations, validated at the end; the real AdamW (no lr schedule)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=4,
                 val_interval=4)
param_scheduler = []
optim_wrapper = dict(type='OptimWrapper')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
