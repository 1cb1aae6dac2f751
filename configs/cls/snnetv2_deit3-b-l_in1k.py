"""SN-Netv2: DeiT3-B stitched with DeiT3-L (12/24), ImageNet-1K.

As snnetv2_deit3-s-l_in1k.py, with drop-path 0.15 (B) and 0.4 (L).
"""
_base_ = ['./snnetv2_deit3-s-l_in1k.py']
model = dict(
    backbone=dict(anchors=[
        dict(model_name='deit3_base_patch16_224',
             init_cfg=dict(
                 type='Pretrained',
                 checkpoint='pretrained/deit_3_base_224_21k.pth'),
             drop_path_rate=0.15, constant_drop_path=True),
        dict(model_name='deit3_large_patch16_224',
             init_cfg=dict(
                 type='Pretrained',
                 checkpoint='pretrained/deit_3_large_224_21k.pth'),
             drop_path_rate=0.4, constant_drop_path=True),
    ]))
