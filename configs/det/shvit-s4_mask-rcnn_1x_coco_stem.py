"""SHViT-S4 Mask R-CNN 1x on COCO with real stem features.

As configs/det/shvit-s4_mask-rcnn_1x_coco.py, except that the neck's
stride-4 and stride-8 levels come from the backbone's stem
(``with_stem_features=True``: the stem maps after its 2nd and 3rd conv, 56
and 112 channels) through 1x1 laterals merged into the FPN's top-down
path, instead of two chained transposed convs on the stride-16 lateral.
Not in the paper: an alternative to the official synthesised levels.
"""
_base_ = ['./shvit-s4_mask-rcnn_1x_coco.py']

model = dict(
    backbone=dict(with_stem_features=True),
    neck=dict(stem_in_channels=[56, 112]))
