"""SHViT-S2, ImageNet-1K from scratch (MMPretrain): the S1 recipe
(configs/cls/shvit-s1_in1k.py, whose docstring lists what is kept and
dropped from the official one) with S2's weight decay 0.032."""
_base_ = ['./shvit-s1_in1k.py']

model = dict(backbone=dict(arch='s2'), head=dict(in_channels=448))
optim_wrapper = dict(optimizer=dict(weight_decay=0.032))
