"""SN-Netv2: DeiT3-S stitched with DeiT3-L, UPerNet, ADE20K (MMSeg).

A multi-level variant of configs/seg/snnetv2_ade20k.py, following mmseg's
recipe for plain ViTs with layer-wise lr decay (configs/mae/
mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py): the four stride-16
features (large blocks 9, 14, 19, 23, or the small blocks standing in for
them) become strides 4, 8, 16 and 32 through ``Feature2Pyramid``
(transposed convolutions / max-pooling), then ``UPerHead`` with an FCN
auxiliary head on the third level.

Optimizer: AdamW lr 1e-4, weight decay 0.05, linear warm-up 1500 iterations
then poly decay (power 1.0), 160k iterations at batch 16. Layer-wise lr
decay through ``StitchedLayerDecayOptimWrapperConstructor``: each anchor's
blocks decay by their depth within that anchor, at 0.65 for the 12-block
anchor (mmseg's MAE-B value) and 0.95 for the 24-block one (mmseg's BEiT-L
value); a stitching layer gets the scale of the blocks it joins.
"""
_base_ = ['./snnetv2_ade20k.py']

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    neck=dict(
        type='Feature2Pyramid',
        embed_dim=1024,
        rescales=[4, 2, 1, 0.5],
        norm_cfg=norm_cfg),
    decode_head=dict(
        _delete_=True,
        type='UPerHead',
        in_channels=[1024, 1024, 1024, 1024],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        _delete_=True,
        type='FCNHead',
        in_channels=1024,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='StitchedLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=[0.65, 0.95]))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500,
         end=160000),
]
