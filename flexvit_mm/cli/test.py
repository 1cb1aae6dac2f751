"""``tools/test.py``: evaluate a checkpoint with an mmseg, mmdet or
mmpretrain config on the mmengine Runner, with each toolbox's metrics.
"""
import argparse
import os.path as osp

from .common import (UserInputError, add_common_args, apply_cfg_options,
                     export_local_rank, finish_distributed, launch_settings,
                     load_config, resolve_work_dir, toolbox_of)
from .toolbox_options import (attach_out, check_out, configure_out,
                              enable_show_dir, enable_tta)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a checkpoint.')
    parser.add_argument('config', help='the config file')
    parser.add_argument('checkpoint', help='the checkpoint file')
    parser.add_argument(
        '--out',
        help='save the predictions: a folder of label maps for mmseg, a '
        '.pkl file for mmdet and mmpretrain')
    parser.add_argument(
        '--show-dir', help='save images painted with the predictions here')
    parser.add_argument(
        '--tta', action='store_true', help='test-time augmentation')
    add_common_args(parser)
    args = parser.parse_args(argv)
    export_local_rank(args)
    return args


def build_test_config(args):
    """Load the config and apply the command line to it.

    Args:
        args (argparse.Namespace): From :func:`parse_args`.

    Returns:
        tuple[mmengine.Config, str]: the config and its toolbox.
    """
    if not osp.isfile(args.checkpoint):
        raise UserInputError(
            f'The checkpoint {args.checkpoint!r} does not exist. Give the '
            'path of a .pth file written by tools/train.py (its work dir '
            'holds iter_*.pth / epoch_*.pth and a last_checkpoint file).')
    cfg = load_config(args.config)
    toolbox = toolbox_of(cfg)
    launch_settings(cfg, args)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_show_dir(cfg, toolbox, args.show_dir)
    if args.tta:
        enable_tta(cfg, toolbox)
    if args.out:
        check_out(toolbox, args.out)
        configure_out(cfg, toolbox, args.out)
    apply_cfg_options(cfg, args)
    resolve_work_dir(cfg, args, args.config)
    return cfg, toolbox


def main(argv=None):
    """Entry point of ``tools/test.py``; returns the metrics."""
    from ..datasets import check_dataset_layout
    from .train import build_runner
    args = parse_args(argv)
    cfg, toolbox = build_test_config(args)
    check_dataset_layout(cfg, dataloader_keys=('test_dataloader', ))
    runner = build_runner(cfg)
    if args.out:
        attach_out(runner, toolbox, args.out)
    metrics = runner.test()
    finish_distributed()
    return metrics
