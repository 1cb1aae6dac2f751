# DeiT-III anchors as SN-Netv2's official segmentation models use them: 512
# crops (32x32 token grid, position embeddings resampled on load), BEiT-style
# relative position bias per block (starts at zero), drop-path 0.1 with a
# linear ramp; weights from the official deit_3_*_224_21k.pth in pretrained/.


def _anchor(size):
    return dict(
        model_name=f'deit3_{size}_patch16_224',
        img_size=512,
        drop_path_rate=0.1,
        rel_pos_bias=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint=f'pretrained/deit_3_{size}_224_21k.pth'))


seg_anchors = dict(
    small=_anchor('small'), base=_anchor('base'), large=_anchor('large'))
del _anchor  # a helper, not a config key
