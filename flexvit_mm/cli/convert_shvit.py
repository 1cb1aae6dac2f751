"""``tools/model_converters/shvit_to_flexvit.py``: convert an official
(``shvit_s{1..4}.pth``) or timm SHViT checkpoint for flexvit-mm."""
import argparse
import os
import os.path as osp

import torch

from ..checkpoint import load_checkpoint_file
from .common import (UserInputError, add_trust_checkpoint_arg,
                     check_output_file)


def parse_args(argv=None):
    from ..models.backbones.shvit import SHViT
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official shvit_sN.pth (weights under '
                        '"model") or a timm shvit_sN state dict')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--arch', required=True,
                        choices=sorted(SHViT.arch_zoo),
                        help='the variant the config uses; a checkpoint of '
                        'another variant is refused')
    parser.add_argument('--dense', action='store_true',
                        help='backbone only ("backbone." keys) for detection '
                        'or segmentation; default: the whole classifier '
                        '("backbone." + "head." keys for SHViTClsHead)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite an existing dst')
    add_trust_checkpoint_arg(
        parser, example='; official training checkpoints that hold e.g. '
        'their argparse.Namespace need it')
    return parser.parse_args(argv)


def convert_file(src, dst, arch, dense=False, force=False):
    """Convert ``src`` to ``dst``; returns the converted state dict."""
    from ..models.backbones.shvit_convert import (
        IncompatibleSHViTCheckpointError, convert_shvit, detect_layout,
        unwrap_state_dict)
    if not osp.isfile(src):
        raise UserInputError(f'The checkpoint {src!r} does not exist.')
    check_output_file(dst, 'dst')
    if osp.exists(dst) and not force:
        raise UserInputError(f'{dst!r} exists; nothing was written. '
                             'Pass --force to overwrite it.')
    checkpoint = load_checkpoint_file(src)
    try:
        layout = detect_layout(unwrap_state_dict(checkpoint))
        state = convert_shvit(checkpoint, arch, dense=dense)
    except IncompatibleSHViTCheckpointError as error:
        raise UserInputError(f'{src}: {error}') from error
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(
        dict(state_dict=state,
             meta=dict(converted_from=osp.basename(src), layout=layout,
                       arch=arch, dense=dense)), dst)
    left_out = len(unwrap_state_dict(checkpoint)) - len(state)
    print(f'Converted {src} ({layout} layout, SHViT-{arch.upper()}) -> {dst}'
          f' ({len(state)} tensors, {"backbone only" if dense else "backbone + head"})'
          + (f'; {left_out} tensors of {src} left out (classifier or '
             'distillation head)' if left_out else ''))
    return state


def main(argv=None):
    args = parse_args(argv)
    convert_file(args.src, args.dst, args.arch, args.dense, args.force)
