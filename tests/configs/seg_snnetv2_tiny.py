# A tiny stitched pair as an mmseg backbone (dense outputs at stride 8 with
# patch 8), FCN head, on (generated) ADE20K: the stitch sweep and the
# sampling hooks through a segmentor.
_base_ = [
    '../../configs/_base_/datasets/ade20k_cpu-64x64.py',
    './_base_/tiny_mmseg.py'
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=(64, 64)),
    backbone=dict(
        type='SNNetv2',
        anchors=[
            dict(model_name='deit3_small_patch16_224', img_size=64,
                 patch_size=8, embed_dim=32, depth=3, num_heads=2),
            dict(model_name='deit3_base_patch16_224', img_size=64,
                 patch_size=8, embed_dim=48, depth=6, num_heads=2),
        ],
        lora_rank=4,
        out_indices=(5, )),
    decode_head=dict(
        type='FCNHead',
        in_channels=48,
        in_index=0,
        channels=16,
        num_convs=1,
        concat_input=False,
        num_classes=150,
        norm_cfg=dict(type='LayerNorm2d'),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
train_dataloader = dict(batch_size=2)
custom_hooks = [
    dict(type='StitchingInitHook', num_images=4),
    dict(type='StitchSamplingHook', gap=0.001, input_shape=(64, 64)),
]
find_unused_parameters = True
