# NYUv2 depth (BTS split: 24,231 train / 654 test images, 480x640) in mmseg's
# layout (data/nyu/{images,annotations}/{train,test}, depth PNGs in uint16
# millimetres), with the official SN-Netv2 / Monocular-Depth-Estimation-
# Toolbox augmentation: valid-region crop, rotation +-2.5 deg, flip, random
# 416x544 crop, colour augmentation. Test: the full 480x640 frame; the
# depth estimator's test_cfg adds the flip test. Evaluation on the Eigen crop
# of the 480x640 ground truth, depths in (1e-3, 10) m.
dataset_type = 'NYUDataset'
data_root = 'data/nyu'
crop_size = (416, 544)
meta_keys = ('img_path', 'depth_map_path', 'ori_shape', 'img_shape',
             'pad_shape', 'scale_factor', 'flip', 'flip_direction',
             'category_id')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='NYUValidCrop'),
    # mmseg rotates the depth map as a "segmentation field": its border must
    # be 0 (no depth, ignored by the loss), not mmseg's default 255.
    dict(type='RandomRotate', prob=0.5, degree=2.5, pad_val=0,
         seg_pad_val=0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='DepthColorAug', prob=0.5, gamma_range=(0.9, 1.1),
         brightness_range=(0.75, 1.25), color_range=(0.9, 1.1)),
    dict(type='PackSegInputs', meta_keys=meta_keys),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    # A no-op for NYUv2's 480x640 frames; other sizes are fitted into it.
    dict(type='Resize', scale=(640, 480), keep_ratio=True),
    # Loaded after the resize: the metric compares at the label's size.
    dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='PackSegInputs', meta_keys=meta_keys),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='images/train', depth_map_path='annotations/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        test_mode=True,
        data_prefix=dict(
            img_path='images/test', depth_map_path='annotations/test'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='SelectableDepthMetric',
    min_depth_eval=1e-3,
    max_depth_eval=10.0,
    crop_type='nyu_crop')
test_evaluator = val_evaluator
