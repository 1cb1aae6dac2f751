"""Ablation: SN-Net v1 stitching of DeiT3-S and DeiT3-L, ImageNet-1K.

SL routes only (ids 0-12 keep their v2 meaning; 13 is not a stitch), plain
fully trainable linear stitching layers (lora_rank=0), stitches sampled
uniformly (``StitchSamplingHook(uniform=True)``: one group of all
stitches), as SN-Net v1. Everything else as snnetv2_deit3-s-l_in1k.py.
"""
_base_ = ['./snnetv2_deit3-s-l_in1k.py']
model = dict(backbone=dict(mode='v1', lora_rank=0))
custom_hooks = [
    dict(type='StitchingInitHook', num_images=100),
    dict(type='StitchSamplingHook', uniform=True, input_shape=(224, 224)),
]
