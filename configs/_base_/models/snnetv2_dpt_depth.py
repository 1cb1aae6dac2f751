# SN-Netv2 DeiT3-S + DeiT3-L with a DPT depth head, as in the official NYUv2
# model (ziplab/SN-Netv2 depth_estimation/configs/snnet/
# snnetv2_dpt_deit3_s_l_nyu.py).
#
# Anchors: timm DeiT-III at img_size 224 (their pretraining size); the dense
# backbone resamples the position embeddings to every input size. No
# drop-path (the official DeiT3 backbone's default, the config sets none).
# Dense outputs: large blocks 4, 11, 17, 23 (small blocks 2, 5, 8, 11 through
# the S->L stitching layers), each a 1024-channel stride-16 map with its cls
# token for DPT's 'project' readout.
# Depth: relu(x) + 1e-3, clamped to [1e-3, 10] m at test time (the official
# head); whole-image test with the horizontal flip test.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    # Padded depth is "no ground truth" for the loss and the metric.
    seg_pad_val=0,
    size_divisor=16)
embed_dims = 1024
model = dict(
    type='FlipDepthEstimator',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='SNNetv2',
        anchors=[
            dict(model_name='deit3_small_patch16_224',
                 img_size=224,
                 drop_path_rate=0.0,
                 init_cfg=dict(
                     type='Pretrained',
                     checkpoint='pretrained/deit_3_small_224_21k.pth')),
            dict(model_name='deit3_large_patch16_224',
                 img_size=224,
                 drop_path_rate=0.0,
                 init_cfg=dict(
                     type='Pretrained',
                     checkpoint='pretrained/deit_3_large_224_21k.pth')),
        ],
        mode='v2',
        lora_rank=16,
        out_indices=(4, 11, 17, 23),
        output_cls_token=True,
        stitch_id=0),
    decode_head=dict(
        type='DPTDepthHead',
        in_channels=(embed_dims, ) * 4,
        channels=256,
        embed_dims=embed_dims,
        post_process_channels=[96, 192, 384, 768],
        readout_type='project',
        patch_size=16,
        norm_cfg=None,
        depth_act='relu',
        min_depth=1e-3,
        max_depth=10.0,
        loss_decode=dict(type='SiLogLoss')),
    train_cfg=dict(),
    test_cfg=dict(mode='whole', flip=True))
