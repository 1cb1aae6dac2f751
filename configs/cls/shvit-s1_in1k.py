"""SHViT-S1, ImageNet-1K from scratch (MMPretrain).

The paper recipe (reference: ysj9909/SHViT main.py defaults and the README
training commands):

Kept:

- 300 epochs, 8 GPUs x 256 = 2048 images per step, AdamW (eps 1e-8) at
  lr 4e-3 (1e-3 per 512 images), weight decay 0.025 (S1; S2 0.032, S3
  0.035, S4 0.03) with none on biases and norm weights, 5 linear warm-up
  epochs from 1e-6, cosine to 1e-5;
- DeiT augmentation: bicubic RandomResizedCrop + flip, RandAugment
  rand-m9-mstd0.5-inc1, random erasing 0.25, Mixup 0.8 / CutMix 1.0,
  label smoothing 0.1, repeated augmentation; test resize 256 (bicubic),
  center crop 224 (S4: resize 292, crop 256, trained at 256);
- model EMA with decay 0.99996 (mmengine ``EMAHook`` momentum 4e-5);
- BatchNorm1d + Linear head (``SHViTClsHead``); FP32 training, as the
  official engine (its autocast line is commented out).

Dropped or changed:

- adaptive gradient clipping (AGC 0.02): mmengine's optim wrapper only
  clips by norm or value; no clipping here;
- distillation: none (the official default; no README command uses it);
- EMA: mmengine validates and saves the EMA weights (the raw ones go to
  ``ema_state_dict``), where the official validates the raw model;
- the warm-up and cosine schedule are per iteration (timm steps per epoch).

Deploy: ``tools/test.py CONFIG CKPT --fuse`` folds every BatchNorm (the
backbone's and the head's) before testing.
"""
_base_ = [
    '../_base_/models/shvit_cls.py',
    '../_base_/datasets/imagenet_bs256_deit-aug_224.py',
    '../_base_/schedules/imagenet_bs2048_adamw_shvit_300e.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)

model = dict(backbone=dict(arch='s1'), head=dict(in_channels=320))
optim_wrapper = dict(optimizer=dict(weight_decay=0.025))
custom_hooks = [dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL')]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10,
                                     max_keep_ckpts=3, save_best='auto'))
