"""``tools/model_converters/snnetv2_to_flexvit.py``: convert an official
SN-Netv2 classification checkpoint for a flexvit-mm config."""
import argparse
import os
import os.path as osp

import torch

from .common import UserInputError, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the flexvit-mm config the checkpoint '
                        'is for, e.g. configs/cls/snnetv2_deit3-s-l_in1k.py')
    parser.add_argument('src', help='official checkpoint, e.g. '
                        'snnetv2_deit3_s_l.pth')
    parser.add_argument('dst', help='output .pth (whole classifier, '
                        '"backbone." prefix)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite an existing dst')
    return parser.parse_args(argv)


def main(argv=None):
    from mmengine.registry import MODELS, init_default_scope

    from ..models.stitching.convert import convert_official_snnetv2
    args = parse_args(argv)
    if not osp.isfile(args.src):
        raise UserInputError(f'The checkpoint {args.src!r} does not exist.')
    if osp.exists(args.dst) and not args.force:
        raise UserInputError(f'{args.dst!r} exists; nothing was written. '
                             'Pass --force to overwrite it.')
    cfg = load_config(args.config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    # The anchors' own weights come from the checkpoint being converted.
    for anchor in cfg.model.backbone.anchors:
        anchor.checkpoint = None
    model = MODELS.build(cfg.model)
    official = torch.load(args.src, map_location='cpu', weights_only=False)
    state = convert_official_snnetv2(official, model.backbone)
    model.backbone.load_state_dict(state, strict=True)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(
        dict(state_dict={f'backbone.{k}': v for k, v in state.items()},
             meta=dict(converted_from=osp.basename(args.src),
                       config=osp.basename(args.config))), args.dst)
    print(f'Converted {args.src} -> {args.dst} '
          f'({len(state)} tensors, LoRA rank {model.backbone.lora_rank}, '
          f'{len(model.backbone.stitch_ids)} stitches)')
