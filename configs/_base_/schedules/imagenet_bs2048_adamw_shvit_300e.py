# SHViT's ImageNet-1K schedule (ysj9909/SHViT main.py + README commands):
# AdamW (eps 1e-8) at lr 1e-3 x 2048 / 512 = 4e-3 for a global batch of
# 2048, no weight decay on biases and norm weights (timm's
# filter_bias_and_bn), 5 linear warm-up epochs from 1e-6, cosine to 1e-5,
# 300 epochs. The weight decay differs per variant (set by each config).
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.025, eps=1e-8,
                   betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 4e-3, by_epoch=True, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5)
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# lr 4e-3 is for 8 GPUs x 256; --auto-scale-lr rescales it linearly.
auto_scale_lr = dict(base_batch_size=2048)
