"""The options a generated dataset accepts, checked before anything is
written: a bad count or size would otherwise end in a bare ``assert`` or a
numpy error after part of the dataset was already on disk."""
import numbers

from ...errors import FlexvitError

# The classes each layout can hold; NYUv2 is depth, it has none.
MAX_CLASSES = {
    'ade20k': 150,
    'coco_stuff10k': 171,
    'coco': 80,
    'imagenet': 1000,
}
# Below one ViT patch the generated scenes and objects have no content to
# learn; far above the real datasets' sizes one image takes gigabytes.
MIN_IMG_SIDE = 16
MAX_IMG_SIDE = 4096


class SyntheticOptionError(FlexvitError, ValueError):
    """A generation option is out of its valid range.

    Args:
        option (str): The keyword argument, e.g. ``'num_classes'``.
        value: The value given.
        valid (str): What would be valid, as a sentence fragment.

    Attributes:
        option (str): As given.
        value: As given.
        valid (str): As given.
    """

    def __init__(self, option, value, valid):
        self.option = option
        self.value = value
        self.valid = valid
        super().__init__(f'{option}={value!r}: {valid}.')


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_options(kind, num_train=None, num_val=None, img_size=None,
                  num_classes=None, seed=None):
    """Check the options of :func:`make_synthetic` for ``kind``.

    ``None`` means "the generator's default" and is always valid.

    Args:
        kind (str): The dataset kind, a key of
            :data:`~flexvit_mm.datasets.synthetic.GENERATORS`.
        num_train (int, optional): Training images (ImageNet: per class).
        num_val (int, optional): Validation images (ImageNet: per class).
        img_size (Sequence[int], optional): (height, width).
        num_classes (int, optional): Classes drawn.
        seed (int, optional): Random seed.

    Raises:
        SyntheticOptionError: For the first invalid option, naming it, its
            value and the valid range.
    """
    for name, value in (('num_train', num_train), ('num_val', num_val)):
        if value is not None and (not _is_int(value) or value < 1):
            raise SyntheticOptionError(
                name, value, 'must be a whole number >= 1 (a split needs '
                'at least one image)')
    if img_size is not None:
        size = tuple(img_size)
        if len(size) != 2 or not all(
                _is_int(side) and MIN_IMG_SIDE <= side <= MAX_IMG_SIDE
                for side in size):
            raise SyntheticOptionError(
                'img_size', img_size, 'height and width must each be a '
                f'whole number of pixels from {MIN_IMG_SIDE} to '
                f'{MAX_IMG_SIDE}')
    if num_classes is not None:
        if kind not in MAX_CLASSES:
            raise SyntheticOptionError(
                'num_classes', num_classes,
                f'{kind} has no classes, leave it out')
        limit = MAX_CLASSES[kind]
        if not _is_int(num_classes) or not 1 <= num_classes <= limit:
            raise SyntheticOptionError(
                'num_classes', num_classes,
                f'must be from 1 to {limit}, the classes of {kind}')
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise SyntheticOptionError('seed', seed,
                                   'must be a whole number >= 0')
