"""Check that every image of a segmentation or depth dataset has its
annotation map, at the image's size.

mmseg pairs each image with the map of the same stem and reads neither
until a batch needs them: a missing map stops training mid-run, and a map of
another size trains without a word and then fails in validation with an
``IndexError`` that names no file. Only the
file headers are read here (``PIL.Image.open`` is lazy), about 60 us per
pair, so even ADE20K's 22k pairs take a second or two.
"""
import os
import os.path as osp
from typing import List, NamedTuple, Optional, Tuple

from PIL import Image

from ..errors import FlexvitError

# EXIF orientations that turn an image by 90 degrees; the toolboxes decode
# images in 'color' mode, which applies them (label maps are read
# 'unchanged', which does not).
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112
# How many bad pairs a message names besides the first.
_MAX_LISTED = 3


class AnnotationMismatchError(FlexvitError, ValueError):
    """An annotation map does not have its image's size, or a file of a
    pair cannot be read as an image."""


class Pair(NamedTuple):
    image: str
    label: str


class Mismatch(NamedTuple):
    pair: Pair
    image_size: Optional[Tuple[int, int]]  # (height, width); None: unread
    label_size: Optional[Tuple[int, int]]
    reason: str = ''  # why a file could not be read


def list_pairs(image_dir, image_suffix, label_dir, label_suffix,
               stems=None):
    """The (image, label map) pairs as mmseg's ``BaseSegDataset`` forms
    them.

    Args:
        image_dir (str): The images folder (``data_prefix.img_path``).
        image_suffix (str): ``img_suffix``.
        label_dir (str): The maps folder (``seg_map_path`` or
            ``depth_map_path``).
        label_suffix (str): ``seg_map_suffix`` / ``depth_map_suffix``.
        stems (Sequence[str], optional): The names of an ``ann_file``, one
            per image, without suffix. Defaults to every file under
            ``image_dir`` (recursively) that ends in ``image_suffix``.

    Returns:
        list[Pair]: Sorted by image path, as mmseg sorts them.
    """
    if stems is None:
        stems = []
        for folder, _, files in os.walk(image_dir):
            rel = osp.relpath(folder, image_dir)
            for name in files:
                if name.endswith(image_suffix):
                    stem = name[:-len(image_suffix)]
                    stems.append(stem if rel == '.' else osp.join(rel, stem))
    pairs = [
        Pair(osp.join(image_dir, stem + image_suffix),
             osp.join(label_dir, stem + label_suffix)) for stem in stems
    ]
    return sorted(pairs)


def missing_labels(pairs) -> List[Pair]:
    """The pairs whose image or label map file does not exist."""
    return [
        p for p in pairs
        if not (osp.isfile(p.image) and osp.isfile(p.label))
    ]


def _size(path, oriented):
    """(height, width) from the file header, as the toolboxes decode it."""
    with Image.open(path) as image:
        width, height = image.size
        if oriented and 'exif' in image.info and image.getexif().get(
                _EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
    return height, width


def size_mismatches(pairs) -> List[Mismatch]:
    """The pairs whose label map is not of its image's size, or that
    cannot be read.

    Args:
        pairs (Sequence[Pair]): Pairs whose files exist.

    Returns:
        list[Mismatch]: In the order of ``pairs``.
    """
    bad = []
    for pair in pairs:
        sizes = []
        for path, oriented in ((pair.image, True), (pair.label, False)):
            try:
                sizes.append(_size(path, oriented))
            except (OSError, SyntaxError, ValueError) as error:
                # PIL raises all three for broken headers.
                bad.append(
                    Mismatch(pair, None, None,
                             f'{path!r} cannot be read as an image '
                             f'({error})'))
                break
        else:
            if sizes[0] != sizes[1]:
                bad.append(Mismatch(pair, *sizes))
    return bad


def _hw(size):
    return f'{size[0]}x{size[1]}'


def mismatch_message(dataset, mismatches, num_pairs, prepare=None):
    """The message of an :class:`AnnotationMismatchError`.

    Args:
        dataset (str): What the dataset is, e.g. ``'The ADE20K dataset of
            train_dataloader'``.
        mismatches (Sequence[Mismatch]): From :func:`size_mismatches`.
        num_pairs (int): The pairs checked.
        prepare (str, optional): How to prepare the dataset afresh.

    Returns:
        str: The first bad pair in full (both paths and sizes), a few more
        by name, and the fix.
    """
    first = mismatches[0]
    lines = [
        f'{dataset} has {len(mismatches)} of {num_pairs} image/annotation '
        'pairs that do not fit; the first:'
    ]
    if first.reason:
        lines.append(f'  {first.reason}')
    else:
        lines += [
            f'  image           {first.pair.image!r} is '
            f'{_hw(first.image_size)} (height x width)',
            f'  annotation map  {first.pair.label!r} is '
            f'{_hw(first.label_size)}'
        ]
    others = [osp.basename(m.pair.label) for m in mismatches[1:]]
    if others:
        more = ', '.join(others[:_MAX_LISTED])
        if len(others) > _MAX_LISTED:
            more += f', ... ({len(others) - _MAX_LISTED} more)'
        lines.append(f'  also: {more}')
    again = f', prepare the dataset again ({prepare})' if prepare else ''
    lines.append(
        'Every annotation map must be readable and have its image\'s height '
        'and width; a map of another size would train silently and fail '
        'in validation. To fix it: write each listed map again at its '
        f'image\'s size{again}, or remove the image and its map.')
    return '\n'.join(lines)
