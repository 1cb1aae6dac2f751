# The tiny FCN on (generated) ADE20K, with flexvit_mm's LayerNorm2d as its
# norm layer, loaded through custom_imports alone.
_base_ = [
    '../../configs/_base_/models/fcn_r18-tiny.py',
    '../../configs/_base_/datasets/ade20k_cpu-64x64.py',
    './_base_/tiny_mmseg.py'
]
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)
norm_cfg = dict(type='LayerNorm2d')
model = dict(
    backbone=dict(norm_cfg=norm_cfg), decode_head=dict(norm_cfg=norm_cfg))
train_dataloader = dict(batch_size=2)
