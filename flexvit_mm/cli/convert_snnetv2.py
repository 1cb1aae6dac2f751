"""``tools/model_converters/snnetv2_to_flexvit.py``: convert an official
SN-Netv2 checkpoint (classification or segmentation) for a flexvit-mm
config."""
import argparse
import os
import os.path as osp

import torch

from ..checkpoint import load_checkpoint_file
from .common import (UserInputError, add_trust_checkpoint_arg,
                     check_output_file, load_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the flexvit-mm config the checkpoint '
                        'is for, e.g. configs/cls/snnetv2_deit3-s-l_in1k.py')
    parser.add_argument('src', help='official checkpoint, e.g. '
                        'snnetv2_deit3_s_l.pth or the ADE20K/COCO-Stuff-10K '
                        'SETR-naive .pth')
    parser.add_argument('dst', help='output .pth (the whole model: '
                        '"backbone." keys, and the heads for segmentation)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite an existing dst')
    add_trust_checkpoint_arg(
        parser, example='; official training checkpoints that hold e.g. '
        'their argparse.Namespace need it')
    return parser.parse_args(argv)


def main(argv=None):
    from mmengine.registry import MODELS, init_default_scope

    from ..models.stitching.convert import convert_official_model
    args = parse_args(argv)
    if not osp.isfile(args.src):
        raise UserInputError(f'The checkpoint {args.src!r} does not exist.')
    check_output_file(args.dst, 'dst')
    if osp.exists(args.dst) and not args.force:
        raise UserInputError(f'{args.dst!r} exists; nothing was written. '
                             'Pass --force to overwrite it.')
    cfg = load_config(args.config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    # Built without init_weights: the anchors' pretrained files are not
    # needed, every weight comes from the checkpoint being converted.
    model = MODELS.build(cfg.model)
    official = load_checkpoint_file(args.src)
    state = convert_official_model(official, model)
    model.load_state_dict(state, strict=True)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(
        dict(state_dict=state,
             meta=dict(converted_from=osp.basename(args.src),
                       config=osp.basename(args.config))), args.dst)
    print(f'Converted {args.src} -> {args.dst} '
          f'({len(state)} tensors, LoRA rank {model.backbone.lora_rank}, '
          f'{len(model.backbone.stitch_ids)} stitches)')
