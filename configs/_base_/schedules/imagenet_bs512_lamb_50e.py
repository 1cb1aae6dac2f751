# SN-Netv2's classification schedule: LAMB, lr 3e-5 for batch 512 (not
# scaled), weight decay 0.02, 5 warm-up epochs from 1e-7, cosine to 1e-5,
# 50 epochs, mixed precision.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='Lamb', lr=3e-5, weight_decay=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-7 / 3e-5, by_epoch=True, begin=0,
         end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=45, eta_min=1e-5, by_epoch=True,
         begin=5, end=50)
]
train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=512)
