"""``tools/dataset_tools/make_synthetic.py``: generate a small learnable
dataset in the exact layout of ADE20K, COCO-Stuff-10K, NYUv2, COCO 2017 or
ImageNet-1K."""
import argparse
import os
import os.path as osp

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
                        help='training images (ImageNet: per class)')
    parser.add_argument('--num-val', type=int, default=None,
                        help='validation images (ImageNet: per class)')
    parser.add_argument('--img-size', type=int, nargs=2, default=None,
                        metavar=('H', 'W'), help='image height and width')
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classes drawn (not for nyu)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--force', action='store_true',
        help='write into an output folder that already has files')
    return parser.parse_args(argv)


def main(argv=None):
    from ..datasets.synthetic import make_synthetic
    args = parse_args(argv)
    out, img_size = DEFAULTS[args.kind]
    out = args.out or out
    if osp.isdir(out) and os.listdir(out) \
            and not args.force:
        raise UserInputError(
            f'{out!r} already has files; nothing was written. Choose another '
            '--out, or pass --force to generate into it anyway.')
    kwargs = dict(img_size=tuple(args.img_size or img_size), seed=args.seed)
    for name in ('num_train', 'num_val', 'num_classes'):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.kind == 'nyu' and 'num_classes' in kwargs:
        raise UserInputError('--num-classes does not apply to --kind nyu.')
    root = make_synthetic(args.kind, out, **kwargs)
    print(f'Wrote a synthetic {args.kind} dataset; data_root: {root}')
    return root
