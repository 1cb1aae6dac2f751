"""SHViT-S4 RetinaNet 1x on COCO with real stem features.

As configs/det/shvit-s4_retinanet_1x_coco.py, except that the neck's
stride-8 level comes from the backbone's stem (``with_stem_features=True``
adds the stride-4 and stride-8 stem maps, 56 and 112 channels) through a
1x1 lateral merged into the FPN's top-down path, instead of a transposed
conv on the stride-16 lateral. The stride-4 map is computed on the way
anyway and ignored by the neck. Not in the paper: an alternative to the
official synthesised level.
"""
_base_ = ['./shvit-s4_retinanet_1x_coco.py']

model = dict(
    backbone=dict(with_stem_features=True),
    neck=dict(stem_in_channels=[56, 112]))
