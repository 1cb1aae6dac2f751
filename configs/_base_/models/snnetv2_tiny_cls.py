# A tiny stitched pair for CPU demos and tests: two narrow timm DeiT-III
# ViTs of different depth and width (3 and 6 blocks, widths 48 and 64), built
# from their config alone, no weights; 8 stitches.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SNNetv2',
        anchors=[
            dict(model_name='deit3_small_patch16_224', img_size=48,
                 patch_size=8, embed_dim=48, depth=3, num_heads=2),
            dict(model_name='deit3_base_patch16_224', img_size=48,
                 patch_size=8, embed_dim=64, depth=6, num_heads=2),
        ],
        mode='v2',
        lora_rank=4,
        num_classes=1000),
    neck=None,
    head=dict(type='ClsHead', loss=dict(type='CrossEntropyLoss'),
              topk=(1, 5)))
