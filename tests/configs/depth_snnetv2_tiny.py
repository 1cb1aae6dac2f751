# The NYUv2 depth recipe (configs/depth/snnetv2_nyu.py) shrunk for CPU
# tests: a tiny stitched pair (depths 4 and 8, patch 8, random weights), a
# narrow DPT head, 64x64 training crops, one epoch of 3 iterations on the generated NYUv2,
# test images resized to 96x128 (ground truth and Eigen crop at 480x640).
# Pipeline, schedulers, evaluator and hooks are the recipe's.
_base_ = ['../../configs/depth/snnetv2_nyu.py']
crop_size = (64, 64)
model = dict(
    backbone=dict(
        anchors=[
            dict(model_name='deit3_small_patch16_224', img_size=64,
                 patch_size=8, embed_dim=32, depth=4, num_heads=2),
            dict(model_name='deit3_base_patch16_224', img_size=64,
                 patch_size=8, embed_dim=48, depth=8, num_heads=2),
        ],
        lora_rank=4,
        # Four outputs standing in for four distinct small blocks (1, 3, 5,
        # 7 -> 0, 1, 2, 3), as (4, 11, 17, 23) -> (2, 5, 8, 11) in the
        # recipe: depths 4 and 8, since 3 small blocks cannot give four.
        out_indices=(1, 3, 5, 7)),
    decode_head=dict(
        in_channels=(48, ) * 4,
        channels=16,
        embed_dims=48,
        post_process_channels=[4, 8, 16, 32],
        depth_channels=8,
        # A random narrow head's relu output is easily below zero everywhere,
        # i.e. min_depth for every stitch; the sigmoid keeps the stitches'
        # predictions (and metrics) apart.
        depth_act='sigmoid'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='NYUValidCrop'),
    dict(type='RandomRotate', prob=0.5, degree=2.5, pad_val=0,
         seg_pad_val=0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='DepthColorAug', prob=0.5),
    dict(type='PackSegInputs', meta_keys={{_base_.meta_keys}}),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='LoadDepthAnnotation', depth_rescale_factor=1e-3),
    dict(type='PackSegInputs', meta_keys={{_base_.meta_keys}}),
]
train_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# 6 generated training images, batch 2: 3 iterations.
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
custom_hooks = [
    dict(type='StitchingInitHook', num_images=4),
    dict(type='StitchSamplingHook', gap=10.0, input_shape=(64, 64)),
]
randomness = dict(seed=0)
