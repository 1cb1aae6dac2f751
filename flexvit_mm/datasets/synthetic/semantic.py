"""Generated semantic segmentation datasets in the ADE20K and COCO-Stuff-10K
layouts that mmseg's ``ADE20KDataset`` and ``COCOStuffDataset`` read."""
import os
import os.path as osp

import cv2
import numpy as np

from .appearance import (class_style, class_weights, finish_image,
                         random_shape_mask, render_texture, write_image)
from .options import MAX_CLASSES, check_options
from .progress import track

ADE20K_NUM_CLASSES = MAX_CLASSES['ade20k']
COCO_STUFF_NUM_CLASSES = MAX_CLASSES['coco_stuff10k']


def render_semantic_scene(height, width, num_classes, rng):
    """A scene of 'stuff' bands and 'thing' shapes.

    Args:
        height (int): Image height.
        width (int): Image width.
        num_classes (int): Number of classes to draw from (Zipf-weighted).
        rng (numpy.random.Generator): Randomness.

    Returns:
        tuple[numpy.ndarray, numpy.ndarray]: RGB uint8 image and a uint8
        label map holding ``class index + 1``, with 0 on the thin unlabeled
        outlines between regions (the "other" label of the real datasets).
    """
    weights = class_weights(num_classes)
    scale = min(height, width) / 256
    image = np.zeros((height, width, 3), np.float32)
    label = np.zeros((height, width), np.uint8)

    # Stuff: one to three bands with a wavy boundary, like sky/wall/floor.
    num_bands = int(rng.integers(1, 4))
    ys, xs = np.mgrid[0:height, 0:width]
    band_of_pixel = np.zeros((height, width), np.int64)
    for k in range(1, num_bands):
        level = height * k / num_bands + rng.uniform(-0.1, 0.1) * height
        wave = 0.06 * height * np.sin(
            2 * np.pi * xs / width * rng.uniform(0.5, 2) + rng.uniform(0, 6))
        band_of_pixel += ys > level + wave
    regions = [band_of_pixel == k for k in range(num_bands)]
    # Things: shapes drawn over the stuff, later ones occluding earlier ones.
    for _ in range(int(rng.integers(1, 6))):
        mask, _ = random_shape_mask(height, width, rng)
        regions.append(mask)

    classes = rng.choice(num_classes, size=len(regions), p=weights)
    outline_width = max(1, round(scale))
    for mask, cls in zip(regions, classes):
        texture = render_texture(height, width, class_style(int(cls)), scale,
                                 rng)
        image[mask] = texture[mask]
        label[mask] = cls + 1
        outline = cv2.morphologyEx(
            mask.astype(np.uint8), cv2.MORPH_GRADIENT,
            np.ones((outline_width + 1, ) * 2, np.uint8)).astype(bool)
        label[outline & mask] = 0
    return finish_image(image, rng), label


def _write_split(image_dir, label_dir, names, height, width, num_classes,
                 rng, desc):
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    for image_name, label_name in track(names, desc):
        image, label = render_semantic_scene(height, width, num_classes, rng)
        write_image(osp.join(image_dir, image_name), image)
        cv2.imwrite(osp.join(label_dir, label_name), label)


def make_ade20k(out, num_train=200, num_val=50, img_size=(256, 256),
                num_classes=ADE20K_NUM_CLASSES, seed=0):
    """Generate ADE20K in the layout of the real ``ADEChallengeData2016``.

    ``out/ADEChallengeData2016/images/{training,validation}/ADE_*.jpg`` and
    ``annotations/{training,validation}/ADE_*.png``; label 0 is "other"
    (ignored with ``reduce_zero_label=True``), 1..150 are the classes.

    Args:
        out (str): Parent folder, e.g. ``data/ade``.
        num_train (int): Training images.
        num_val (int): Validation images.
        img_size (tuple[int, int]): (height, width) of every image.
        num_classes (int): Classes actually drawn (at most 150); the label
            values keep their ADE20K meaning.
        seed (int): Random seed; the same seed gives the same files.

    Returns:
        str: The dataset root (``out/ADEChallengeData2016``).
    """
    check_options('ade20k', num_train, num_val, img_size, num_classes, seed)
    root = osp.join(out, 'ADEChallengeData2016')
    rng = np.random.default_rng(seed)
    for split, prefix, count in (('training', 'ADE_train', num_train),
                                 ('validation', 'ADE_val', num_val)):
        stems = [f'{prefix}_{i:08d}' for i in range(1, count + 1)]
        _write_split(
            osp.join(root, 'images', split),
            osp.join(root, 'annotations', split),
            [(s + '.jpg', s + '.png') for s in stems], *img_size, num_classes,
            rng, f'ADE20K {split}')
    return root


def make_coco_stuff10k(out, num_train=200, num_val=50, img_size=(256, 256),
                       num_classes=COCO_STUFF_NUM_CLASSES, seed=0):
    """Generate COCO-Stuff-10K in the layout mmseg's converter writes.

    ``out/images/{train2014,test2014}/COCO_train2014_*.jpg`` and
    ``out/annotations/{train2014,test2014}/*_labelTrainIds.png``; label 0 is
    unlabeled (``reduce_zero_label=True``), 1..171 are the classes.

    Args:
        out (str): Dataset root, e.g. ``data/coco_stuff10k``.
        num_train (int): Training images.
        num_val (int): Test images.
        img_size (tuple[int, int]): (height, width) of every image.
        num_classes (int): Classes actually drawn (at most 171).
        seed (int): Random seed.

    Returns:
        str: The dataset root.
    """
    check_options('coco_stuff10k', num_train, num_val, img_size, num_classes,
                  seed)
    rng = np.random.default_rng(seed)
    # The 10k images all come from COCO train2014; ids are distinct per split.
    for split, count, first_id in (('train2014', num_train, 1),
                                   ('test2014', num_val, 500000)):
        stems = [f'COCO_train2014_{first_id + i:012d}' for i in range(count)]
        _write_split(
            osp.join(out, 'images', split),
            osp.join(out, 'annotations', split),
            [(s + '.jpg', s + '_labelTrainIds.png') for s in stems],
            *img_size, num_classes, rng, f'COCO-Stuff-10K {split}')
    return out
