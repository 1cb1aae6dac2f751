"""A generated ImageNet-1K in the layout mmpretrain's ``ImageNet`` reads.

``out/train/<wnid>/<wnid>_<n>.JPEG`` (class folders named by the real
WordNet ids), ``out/val/ILSVRC2012_val_<n>.JPEG`` (flat, as released) and
the annotation files ``out/meta/{train,val}.txt`` (``<path> <label>``).
"""
import os
import os.path as osp

import numpy as np

from .appearance import (class_style, finish_image, random_shape_mask,
                         render_texture, write_image)
from .options import MAX_CLASSES, check_options
from .progress import track

IMAGENET_NUM_CLASSES = MAX_CLASSES['imagenet']


def imagenet_wnids():
    """The 1000 ImageNet-1K WordNet ids in label order (from timm)."""
    from timm.data import ImageNetInfo
    return list(ImageNetInfo().label_names())


def render_object(height, width, class_index, rng):
    """One object of the class over a background of random other classes'
    textures in low contrast, so the object, not the frame, decides."""
    scale = min(height, width) / 256
    background_style = class_style(int(rng.integers(0, 1000)))
    background = render_texture(height, width, background_style, scale, rng)
    image = 0.35 * background + 0.65 * 110
    mask, _ = random_shape_mask(height, width, rng, 0.45, 0.85)
    texture = render_texture(height, width, class_style(class_index), scale,
                             rng)
    image[mask] = texture[mask]
    return finish_image(image, rng)


def make_imagenet(out, num_train=20, num_val=5, img_size=(64, 64),
                  num_classes=10, seed=0):
    """Generate ImageNet-1K in its real layout with annotation files.

    Args:
        out (str): Dataset root, e.g. ``data/imagenet``.
        num_train (int): Training images per class.
        num_val (int): Validation images per class.
        img_size (tuple[int, int]): (height, width).
        num_classes (int): Classes generated: the first ``num_classes``
            wnids, labels 0..num_classes-1 as in the real label order.
        seed (int): Random seed.

    Returns:
        str: The dataset root.
    """
    check_options('imagenet', num_train, num_val, img_size, num_classes, seed)
    rng = np.random.default_rng(seed)
    wnids = imagenet_wnids()[:num_classes]
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)

    train_lines = []
    jobs = [(label, n) for label in range(num_classes)
            for n in range(num_train)]
    for label, n in track(jobs, 'ImageNet train'):
        wnid = wnids[label]
        os.makedirs(osp.join(out, 'train', wnid), exist_ok=True)
        rel = f'{wnid}/{wnid}_{n + 1}.JPEG'
        write_image(
            osp.join(out, 'train', rel),
            render_object(*img_size, label, rng))
        train_lines.append(f'{rel} {label}')

    val_lines = []
    os.makedirs(osp.join(out, 'val'), exist_ok=True)
    # The real validation set is flat and interleaves the classes.
    labels = rng.permutation(np.repeat(np.arange(num_classes), num_val))
    for i, label in enumerate(track(labels, 'ImageNet val')):
        name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        write_image(
            osp.join(out, 'val', name),
            render_object(*img_size, int(label), rng))
        val_lines.append(f'{name} {label}')

    for split, lines in (('train', train_lines), ('val', val_lines)):
        with open(osp.join(out, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return out
