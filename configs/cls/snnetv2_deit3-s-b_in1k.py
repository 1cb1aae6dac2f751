"""SN-Netv2: DeiT3-S stitched with DeiT3-B (equal depths, 12/12), ImageNet-1K.

As snnetv2_deit3-s-l_in1k.py, with drop-path 0.05 (S) and 0.15 (B).
"""
_base_ = ['./snnetv2_deit3-s-l_in1k.py']
model = dict(
    backbone=dict(anchors=[
        dict(model_name='deit3_small_patch16_224',
             init_cfg=dict(
                 type='Pretrained',
                 checkpoint='pretrained/deit_3_small_224_21k.pth'),
             drop_path_rate=0.05, constant_drop_path=True),
        dict(model_name='deit3_base_patch16_224',
             init_cfg=dict(
                 type='Pretrained',
                 checkpoint='pretrained/deit_3_base_224_21k.pth'),
             drop_path_rate=0.15, constant_drop_path=True),
    ]))
