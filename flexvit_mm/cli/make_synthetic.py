"""``tools/dataset_tools/make_synthetic.py``: generate a small learnable
dataset in the exact layout of ADE20K, COCO-Stuff-10K, NYUv2, COCO 2017 or
ImageNet-1K."""
import argparse

from ..datasets.synthetic import (SyntheticOptionError, dataset_root,
                                  make_synthetic, read_marker)
from .common import UserInputError

# kind -> (default --out, default image size)
DEFAULTS = {
    'ade20k': ('data/ade', (256, 256)),
    'coco_stuff10k': ('data/coco_stuff10k', (256, 256)),
    'nyu': ('data/nyu', (480, 640)),
    'coco': ('data/coco', (256, 256)),
    'imagenet': ('data/imagenet', (64, 64)),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--kind', required=True, choices=sorted(DEFAULTS))
    parser.add_argument(
        '--out',
        help='output folder (default: where the real configs look: '
        + ', '.join(f'{k}: {v[0]}' for k, v in DEFAULTS.items()) + ')')
    parser.add_argument('--num-train', type=int, default=None,
                        help='training images, >= 1 (ImageNet: per class)')
    parser.add_argument('--num-val', type=int, default=None,
                        help='validation images, >= 1 (ImageNet: per class)')
    parser.add_argument('--img-size', type=int, nargs=2, default=None,
                        metavar=('H', 'W'),
                        help='image height and width, 16 to 4096 pixels')
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classes drawn (not for nyu)')
    parser.add_argument('--seed', type=int, default=0, help='>= 0')
    parser.add_argument(
        '--force', action='store_true',
        help='replace a dataset that this tool generated earlier (never '
        'other files)')
    return parser.parse_args(argv)


def _flag_error(error):
    """Turn a library option error into one that names the flag."""
    value = error.value
    if isinstance(value, (tuple, list)):
        value = ' '.join(str(v) for v in value)
    flag = '--' + error.option.replace('_', '-')
    return UserInputError(f'{flag} {value}: {error.valid}.')


def main(argv=None):
    args = parse_args(argv)
    out, img_size = DEFAULTS[args.kind]
    out = args.out or out
    kwargs = dict(img_size=tuple(args.img_size or img_size), seed=args.seed)
    for name in ('num_train', 'num_val', 'num_classes'):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    replaces = None
    if args.force:
        replaces = read_marker(dataset_root(args.kind, out))
    try:
        root = make_synthetic(args.kind, out, force=args.force, **kwargs)
    except SyntheticOptionError as error:
        raise _flag_error(error) from error
    if replaces is not None:
        print(f'Replaced the synthetic {replaces.get("kind")} dataset that '
              f'was in {root}.')
    print(f'Wrote a synthetic {args.kind} dataset; data_root: {root}')
    return root
