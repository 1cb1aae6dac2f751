# SN-Netv2 DeiT3-S + DeiT3-L (512x512 crops) with the SETR-naive head and
# three auxiliary heads, as in the official ADE20K / COCO-Stuff-10K models.
#
# Anchors: timm DeiT-III with BEiT-style blocks (``rel_pos_bias=True``): a
# zero-initialised relative position bias table per block, which the
# official mmseg MAE anchors carry, so that their released checkpoints
# convert exactly. Drop-path 0.1, linearly increasing over the blocks.
# Dense outputs: large blocks 9, 14, 19, 23 (small blocks 4, 7, 9, 11 through
# the S->L stitching layers), 1024 channels at stride 16 for every stitch.
_base_ = ['./deit3_anchors_seg512.py']
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
embed_dims = 1024


def _setr_head(in_index, num_convs, loss_weight):
    return dict(
        type='SETRUPHead',
        in_channels=embed_dims,
        channels=256,
        in_index=in_index,
        num_classes=150,
        dropout_ratio=0,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU'),
        num_convs=num_convs,
        up_scale=4,
        kernel_size=1,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False,
            loss_weight=loss_weight))


model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='SNNetv2',
        anchors=[{{_base_.seg_anchors.small}}, {{_base_.seg_anchors.large}}],
        mode='v2',
        lora_rank=16,
        out_indices=(9, 14, 19, 23),
        stitch_id=0),
    decode_head=_setr_head(in_index=3, num_convs=1, loss_weight=1.0),
    auxiliary_head=[
        _setr_head(in_index=i, num_convs=2, loss_weight=0.4)
        for i in range(3)
    ],
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
del _setr_head  # a helper, not a config key
