"""SHViT-S3, ImageNet-1K from scratch (MMPretrain): the S1 recipe
(configs/cls/shvit-s1_in1k.py, whose docstring lists what is kept and
dropped from the official one) with S3's weight decay 0.035."""
_base_ = ['./shvit-s1_in1k.py']

model = dict(backbone=dict(arch='s3'), head=dict(in_channels=448))
optim_wrapper = dict(optimizer=dict(weight_decay=0.035))
