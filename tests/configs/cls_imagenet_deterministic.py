# cls_imagenet.py without random augmentation, so that an interrupted and
# resumed run can be compared with an uninterrupted one bit for bit.
_base_ = ['./cls_imagenet.py']
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=48, edge='short'),
    dict(type='CenterCrop', crop_size=48),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
train_cfg = dict(max_iters=6)
default_hooks = dict(checkpoint=dict(interval=3))
