"""SN-Netv2: DeiT3-S stitched with DeiT3-L, SETR-naive, COCO-Stuff-10K.

The ADE20K recipe (configs/seg/snnetv2_ade20k.py, whose docstring explains
the optimizer and the fixes of the official configs) on COCO-Stuff-10K:
171 classes, 80k iterations, batch 16, mIoU with a 512 sliding window. The
official setr_naive_512x512_80k_b16_coco_stuff10k_deit_3_s_l_224_snnetv2.py
lacks a data preprocessor; this one has it.
"""
_base_ = [
    '../_base_/models/snnetv2_deit3-s-l_setr-naive.py',
    'mmseg::_base_/datasets/coco-stuff10k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)

num_classes = 171
model = dict(
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=[
        dict(
            type='SETRUPHead',
            in_channels=1024,
            channels=256,
            in_index=i,
            num_classes=num_classes,
            dropout_ratio=0,
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            act_cfg=dict(type='ReLU'),
            num_convs=2,
            up_scale=4,
            kernel_size=1,
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4))
        for i in range(3)
    ])

# 8 GPUs x 2 images = 16 per iteration.
train_dataloader = dict(batch_size=2, num_workers=2, persistent_workers=True)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005),
    clip_grad=None)

custom_hooks = [
    dict(type='StitchingInitHook', num_images=50),
    dict(type='StitchSamplingHook', gap=10.0, input_shape=(512, 512)),
]
val_cfg = dict(type='StitchSweepValLoop', stitch_ids='anchors+middle')
find_unused_parameters = True
