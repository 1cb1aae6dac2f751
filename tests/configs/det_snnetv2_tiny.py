# The SN-Netv2 Mask R-CNN recipe (configs/det/snnetv2_mask-rcnn_coco.py)
# shrunk for CPU tests on the generated COCO: a tiny stitched pair (3 + 6
# blocks, 8 stitches), narrow neck and heads, LSJ at 128, 4 iterations.
# Everything not set here (the model structure, LSJ pipeline, layer-decay
# constructor, hooks, evaluator) is the real config's.
_base_ = ['../../configs/det/snnetv2_mask-rcnn_coco.py']
image_size = (128, 128)
width = 16
model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)
    ]),
    backbone=dict(
        anchors=[
            dict(model_name='deit3_small_patch16_224', img_size=64,
                 patch_size=16, embed_dim=32, depth=3, num_heads=2,
                 drop_path_rate=0.1),
            dict(model_name='deit3_base_patch16_224', img_size=64,
                 patch_size=16, embed_dim=48, depth=6, num_heads=2,
                 drop_path_rate=0.1),
        ],
        lora_rank=4,
        out_indices=(5, )),
    neck=dict(backbone_channel=48, in_channels=[12, 24, 48, 48],
              out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, conv_out_channels=width,
                       fc_out_channels=32),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width)),
    # An untrained model scores below the usual 0.05; keep its detections
    # so that CocoMetric has something to evaluate after a few iterations.
    test_cfg=dict(rcnn=dict(score_thr=0.0)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
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
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# CPU: no mixed precision; the layer-decay constructor stays.
optim_wrapper = dict(type='OptimWrapper')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
         end=2),
    dict(type='MultiStepLR', begin=0, end=4, by_epoch=False, milestones=[3],
         gamma=0.1)
]
train_cfg = dict(max_iters=4, val_interval=4, dynamic_intervals=None)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=4, max_keep_ckpts=1))
custom_hooks = [
    dict(type='StitchingInitHook', num_images=4),
    dict(type='StitchSamplingHook', gap=0.001, input_shape=image_size),
]
randomness = dict(seed=0)
