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
    parser.add_argument(
        '--fuse',
        action='store_true',
        help='after loading the checkpoint, call switch_to_deploy() on '
        'every module that has one (e.g. SHViT and SHViTClsHead fold their '
        'BatchNorms into the convs/linear) and test the fused model')
    parser.add_argument(
        '--stitch-id',
        help='stitched backbones (SN-Netv2): the stitch(es) to evaluate: an '
        'id, a list "3,12,80" (ranges "2-12" too) or "all". The test set is '
        'read once and every stitch is evaluated on each batch; the per-'
        'stitch table is printed and written to WORK_DIR/stitches.{json,csv}'
        ' with a metric-vs-GFLOPs plot stitches_pareto.png')
    parser.add_argument(
        '--flops-shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='input size at which the stitches\' GFLOPs are counted for the '
        'report (default: the input_shape of the config\'s '
        'StitchSamplingHook, else the first anchor\'s img_size)')
    parser.add_argument(
        '--no-flops',
        action='store_true',
        help='do not count GFLOPs for the stitch report')
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
        if args.stitch_id is not None:
            raise UserInputError(
                '--out saves the predictions of one model; with --stitch-id '
                'the per-stitch metrics go to WORK_DIR/stitches.json. Drop '
                '--out, or run once per stitch.')
        check_out(toolbox, args.out)
        configure_out(cfg, toolbox, args.out)
    if args.stitch_id is not None:
        if args.show_dir and (args.stitch_id == 'all' or ',' in
                              args.stitch_id or '-' in args.stitch_id):
            raise UserInputError(
                '--show-dir paints one model\'s predictions: give a single '
                '--stitch-id with it.')
        cfg.test_cfg = dict(
            type='StitchSweepTestLoop', stitch_ids=args.stitch_id,
            fp16=cfg.get('test_cfg', {}).get('fp16', False))
    apply_cfg_options(cfg, args)
    resolve_work_dir(cfg, args, args.config)
    return cfg, toolbox


def fuse_model(model):
    """:func:`flexvit_mm.models.deploy.fuse_model` for ``--fuse``: its
    errors, and a model with nothing to fuse, end as user errors."""
    from ..models.deploy import FuseError, can_fuse
    from ..models.deploy import fuse_model as fuse
    if not can_fuse(model):
        raise UserInputError(
            '--fuse: no module of this model has switch_to_deploy(); there '
            'is nothing to fuse. Drop --fuse.')
    try:
        return fuse(model)
    except FuseError as error:
        raise UserInputError(f'--fuse: {error}') from error


def _make_fuse_hook():
    """A hook that fuses the model after ``runner.test()`` has loaded the
    checkpoint and every other hook has prepared the model for the test
    epoch, before the first batch."""
    from mmengine.hooks import EMAHook, Hook
    from mmengine.logging import print_log
    from mmengine.model import is_model_wrapper

    class FuseHook(Hook):
        # After EMAHook.before_test_epoch, which swaps the averaged weights
        # in parameter by parameter: that needs the unfused structure.
        priority = 'LOWEST'

        def before_test_epoch(self, runner):
            model = runner.model.module if is_model_wrapper(
                runner.model) else runner.model
            # TestLoop.run() calls model.eval() right after this hook
            # anyway; fusing needs it first.
            model.eval()
            names = fuse_model(model)
            for hook in runner.hooks:
                if isinstance(hook, EMAHook):
                    # Its after_test_epoch would swap the raw weights back
                    # into the fused modules (other shapes); a test run
                    # has no use for them.
                    hook.after_test_epoch = lambda *args, **kwargs: None
            print_log(f'--fuse: switch_to_deploy() on {names}',
                      logger='current')

    return FuseHook()


def _prepare_stitch_sweep(runner, args):
    """Check the ids against the model (a clear error before any data is
    read) and give the sweep the per-stitch GFLOPs table."""
    from ..engine.hooks import shared_stitch_table
    from ..models.stitching.selection import (find_stitched_backbone,
                                              parse_stitch_ids)
    try:
        backbone = find_stitched_backbone(runner.model)
        parse_stitch_ids(args.stitch_id, backbone.stitch_ids)
    except (TypeError, ValueError) as error:
        raise UserInputError(f'--stitch-id {args.stitch_id}: {error}')
    if args.no_flops:
        return
    runner._test_loop['flops'] = shared_stitch_table(
        runner, backbone, args.flops_shape)


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
    if args.stitch_id is not None:
        _prepare_stitch_sweep(runner, args)
    if args.fuse:
        hook = _make_fuse_hook()
        runner.register_hook(hook, priority=hook.priority)
    metrics = runner.test()
    finish_distributed()
    return metrics
