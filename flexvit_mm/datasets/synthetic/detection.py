"""A generated COCO 2017 detection / instance segmentation dataset.

``out/{train2017,val2017}/<12-digit id>.jpg`` and
``out/annotations/instances_{train,val}2017.json`` with the real 80 COCO
categories and ids, boxes in ``[x, y, w, h]`` and polygon masks, exactly the
files mmdet's ``CocoDataset`` and ``CocoMetric`` read.
"""
import json
import os
import os.path as osp

import numpy as np

from .appearance import (class_style, class_weights, finish_image,
                         random_shape_mask, render_texture, write_image)
from .options import check_options
from .progress import track

# (id, name, supercategory) of the 80 COCO 2017 categories.
COCO_CATEGORIES = (
    (1, 'person', 'person'), (2, 'bicycle', 'vehicle'),
    (3, 'car', 'vehicle'), (4, 'motorcycle', 'vehicle'),
    (5, 'airplane', 'vehicle'), (6, 'bus', 'vehicle'),
    (7, 'train', 'vehicle'), (8, 'truck', 'vehicle'), (9, 'boat', 'vehicle'),
    (10, 'traffic light', 'outdoor'), (11, 'fire hydrant', 'outdoor'),
    (13, 'stop sign', 'outdoor'), (14, 'parking meter', 'outdoor'),
    (15, 'bench', 'outdoor'), (16, 'bird', 'animal'), (17, 'cat', 'animal'),
    (18, 'dog', 'animal'), (19, 'horse', 'animal'), (20, 'sheep', 'animal'),
    (21, 'cow', 'animal'), (22, 'elephant', 'animal'), (23, 'bear', 'animal'),
    (24, 'zebra', 'animal'), (25, 'giraffe', 'animal'),
    (27, 'backpack', 'accessory'), (28, 'umbrella', 'accessory'),
    (31, 'handbag', 'accessory'), (32, 'tie', 'accessory'),
    (33, 'suitcase', 'accessory'), (34, 'frisbee', 'sports'),
    (35, 'skis', 'sports'), (36, 'snowboard', 'sports'),
    (37, 'sports ball', 'sports'), (38, 'kite', 'sports'),
    (39, 'baseball bat', 'sports'), (40, 'baseball glove', 'sports'),
    (41, 'skateboard', 'sports'), (42, 'surfboard', 'sports'),
    (43, 'tennis racket', 'sports'), (44, 'bottle', 'kitchen'),
    (46, 'wine glass', 'kitchen'), (47, 'cup', 'kitchen'),
    (48, 'fork', 'kitchen'), (49, 'knife', 'kitchen'),
    (50, 'spoon', 'kitchen'), (51, 'bowl', 'kitchen'), (52, 'banana', 'food'),
    (53, 'apple', 'food'), (54, 'sandwich', 'food'), (55, 'orange', 'food'),
    (56, 'broccoli', 'food'), (57, 'carrot', 'food'), (58, 'hot dog', 'food'),
    (59, 'pizza', 'food'), (60, 'donut', 'food'), (61, 'cake', 'food'),
    (62, 'chair', 'furniture'), (63, 'couch', 'furniture'),
    (64, 'potted plant', 'furniture'), (65, 'bed', 'furniture'),
    (67, 'dining table', 'furniture'), (70, 'toilet', 'furniture'),
    (72, 'tv', 'electronic'), (73, 'laptop', 'electronic'),
    (74, 'mouse', 'electronic'), (75, 'remote', 'electronic'),
    (76, 'keyboard', 'electronic'), (77, 'cell phone', 'electronic'),
    (78, 'microwave', 'appliance'), (79, 'oven', 'appliance'),
    (80, 'toaster', 'appliance'), (81, 'sink', 'appliance'),
    (82, 'refrigerator', 'appliance'), (84, 'book', 'indoor'),
    (85, 'clock', 'indoor'), (86, 'vase', 'indoor'),
    (87, 'scissors', 'indoor'), (88, 'teddy bear', 'indoor'),
    (89, 'hair drier', 'indoor'), (90, 'toothbrush', 'indoor'))


def render_instances(height, width, num_classes, rng, max_objects=4):
    """An image with non-overlapping objects on a neutral background.

    Returns:
        tuple: RGB uint8 image and a list of ``(class_index, polygon)`` with
        polygons as (N, 2) float arrays in pixels.
    """
    weights = class_weights(num_classes)
    scale = min(height, width) / 256
    image = np.full((height, width, 3), 110, np.float32)
    image += rng.normal(0, 12, (1, 1, 3)).astype(np.float32)
    occupied = np.zeros((height, width), bool)
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(10):
            mask, polygon = random_shape_mask(height, width, rng, 0.2, 0.45)
            if not (mask & occupied).any() and mask.sum() > 16:
                break
        else:
            continue
        occupied |= mask
        cls = int(rng.choice(num_classes, p=weights))
        texture = render_texture(height, width, class_style(cls), scale, rng)
        image[mask] = texture[mask]
        objects.append((cls, polygon, int(mask.sum())))
    return finish_image(image, rng), objects


def _annotation(ann_id, image_id, category_id, polygon, area):
    x0, y0 = polygon.min(0)
    x1, y1 = polygon.max(0)
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=category_id,
        segmentation=[[round(float(v), 2) for v in polygon.reshape(-1)]],
        area=float(area),
        bbox=[round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
        iscrowd=0)


def make_coco(out, num_train=100, num_val=20, img_size=(256, 256),
              num_classes=80, seed=0):
    """Generate COCO 2017 instances in the real layout.

    Args:
        out (str): Dataset root, e.g. ``data/coco``.
        num_train (int): Training images.
        num_val (int): Validation images.
        img_size (tuple[int, int]): (height, width).
        num_classes (int): Categories drawn (the first ``num_classes`` of
            the 80); the json always lists all 80.
        seed (int): Random seed.

    Returns:
        str: The dataset root.
    """
    check_options('coco', num_train, num_val, img_size, num_classes, seed)
    rng = np.random.default_rng(seed)
    categories = [
        dict(id=i, name=name, supercategory=sup)
        for i, name, sup in COCO_CATEGORIES
    ]
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    ann_id = 1
    height, width = img_size
    for split, count, first_id in (('train2017', num_train, 1),
                                   ('val2017', num_val, 900000)):
        image_dir = osp.join(out, split)
        os.makedirs(image_dir, exist_ok=True)
        images, annotations = [], []
        for i in track(range(count), f'COCO {split}'):
            image_id = first_id + i
            file_name = f'{image_id:012d}.jpg'
            image, objects = render_instances(height, width, num_classes, rng)
            write_image(osp.join(image_dir, file_name), image)
            images.append(
                dict(id=image_id, file_name=file_name, height=height,
                     width=width))
            for cls, polygon, area in objects:
                annotations.append(
                    _annotation(ann_id, image_id, COCO_CATEGORIES[cls][0],
                                polygon, area))
                ann_id += 1
        with open(osp.join(out, 'annotations', f'instances_{split}.json'),
                  'w') as f:
            json.dump(
                dict(
                    info=dict(description='flexvit-mm synthetic COCO'),
                    licenses=[],
                    images=images,
                    annotations=annotations,
                    categories=categories), f)
    return out
