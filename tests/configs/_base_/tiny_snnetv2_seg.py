# Shrinks the SETR-naive SN-Netv2 segmentation configs for CPU tests: tiny
# stitched anchors with relative position bias (8x8 token grid of a 64x64
# crop, patch 8), 4-iteration schedule, 64x64 crops and sliding window,
# single-process loading. The task configs use these as {{_base_.tiny_*}}.
tiny_backbone = dict(
    anchors=[
        dict(model_name='deit3_small_patch16_224', img_size=64, patch_size=8,
             embed_dim=32, depth=3, num_heads=2, drop_path_rate=0.1,
             rel_pos_bias=True),
        dict(model_name='deit3_base_patch16_224', img_size=64, patch_size=8,
             embed_dim=48, depth=6, num_heads=2, drop_path_rate=0.1,
             rel_pos_bias=True),
    ],
    lora_rank=4,
    out_indices=(1, 2, 4, 5))
tiny_data_preprocessor = dict(size=(64, 64))
tiny_test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(43, 43))
tiny_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(1.0, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=(64, 64), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
tiny_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
tiny_hooks = [
    dict(type='StitchingInitHook', num_images=4),
    dict(type='StitchSamplingHook', gap=0.001, input_shape=(64, 64)),
]
