# The real-stem-features variant of the tiny SHViT retinanet
# (configs/det/shvit-s4_retinanet_1x_coco_stem.py): the tiny arch's stem maps
# have 16 / 4 = 4 and 16 / 2 = 8 channels.
_base_ = ['./det_shvit_retinanet_tiny.py']
model = dict(
    backbone=dict(with_stem_features=True),
    neck=dict(stem_in_channels=[4, 8]))
