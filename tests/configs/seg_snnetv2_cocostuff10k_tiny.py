# configs/seg/snnetv2_cocostuff10k.py, shrunk for CPU tests (see
# _base_/tiny_snnetv2_seg.py); everything else is the real config. BN in
# place of SyncBN, which needs GPUs.
_base_ = ['../../configs/seg/snnetv2_cocostuff10k.py', './_base_/tiny_snnetv2_seg.py']
bn = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor={{_base_.tiny_data_preprocessor}},
    backbone={{_base_.tiny_backbone}},
    decode_head=dict(in_channels=48, channels=16, norm_cfg=bn),
    auxiliary_head=[
        dict(type='SETRUPHead', in_channels=48, channels=16, in_index=i,
             num_classes=171, dropout_ratio=0, norm_cfg=bn, num_convs=2,
             up_scale=4, kernel_size=1, align_corners=False,
             loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4))
        for i in range(3)
    ],
    test_cfg={{_base_.tiny_test_cfg}})
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline={{_base_.tiny_train_pipeline}}))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline={{_base_.tiny_test_pipeline}}))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=4, val_interval=4)
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
                        end=4, by_epoch=False)]
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=4))
custom_hooks = {{_base_.tiny_hooks}}
randomness = dict(seed=0)
