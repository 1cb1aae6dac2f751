# COCO 2017 instance segmentation with ViTDet's large-scale jitter (LSJ):
# flip, resize to 0.1-2.0 x 1024, crop 1024 (absolute_range), drop boxes
# that the crop reduced to slivers, pad to 1024 with 114. Test: resize the
# long side to 1024, pad. Batch 4 per GPU (x 16 GPUs = 64 in ViTDet).
# Follows mmdet's projects/ViTDet/configs/lsj-100e_coco-instance.py.
_base_ = ['mmdet::_base_/datasets/coco_instance.py']
image_size = (1024, 1024)
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size=4,
    num_workers=8,
    persistent_workers=True,
    # Every LSJ sample is padded to the same square: grouping by aspect
    # ratio (mmdet's default) would only bias the batches. ViTDet has none.
    batch_sampler=None,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
