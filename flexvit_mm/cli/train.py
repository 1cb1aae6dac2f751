"""``tools/train.py``: train a model from an mmseg, mmdet or mmpretrain
config with the mmengine Runner.

Merges the options of the three toolboxes' own train tools (mmdet and
mmpretrain's ``--resume [PATH]``, ``--auto-scale-lr``, mmpretrain's
``--no-validate``), and adds two guards: the dataset folders are checked
before anything is built, and a work dir that already holds a run is never
silently reused.
"""
import argparse
import glob
import os.path as osp

from mmengine.logging import print_log

from .common import (UserInputError, add_common_args, apply_cfg_options,
                     export_local_rank, finish_distributed, launch_settings,
                     load_config, resolve_work_dir, toolbox_of)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a model (mmseg, mmdet or mmpretrain config).')
    parser.add_argument('config', help='the config file')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume training: from the given checkpoint, or, with no path, '
        'from the latest checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (AmpOptimWrapper, dynamic loss '
        'scale)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size over '
        "the config's auto_scale_lr.base_batch_size")
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='skip validation during training')
    add_common_args(parser)
    args = parser.parse_args(argv)
    export_local_rank(args)
    return args


def _existing_run(work_dir):
    """The checkpoint a previous run left in ``work_dir``, or None."""
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            return f.read().strip() or last
    checkpoints = sorted(glob.glob(osp.join(work_dir, '*.pth')),
                         key=osp.getmtime)
    return checkpoints[-1] if checkpoints else None


def _configure_resume(cfg, args):
    if args.resume is None:
        existing = _existing_run(cfg.work_dir)
        if existing is not None:
            raise UserInputError(
                f'The work dir {cfg.work_dir!r} already holds a training run '
                f'(checkpoint {existing!r}). Nothing was changed. Pass '
                '--resume to continue that run, or --work-dir NEW_DIR to '
                'start a new one.')
        return
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
        if _existing_run(cfg.work_dir) is None:
            print_log(
                f'--resume: no checkpoint in {cfg.work_dir!r} yet; training '
                'starts from the beginning.',
                logger='current')
        return
    if not osp.isfile(args.resume):
        raise UserInputError(
            f'--resume: the checkpoint {args.resume!r} does not exist. Give '
            'the path of a checkpoint written by a run (e.g. '
            'WORK_DIR/iter_1000.pth), or --resume without a path to continue '
            'from the latest checkpoint in --work-dir.')
    cfg.resume = True
    cfg.load_from = args.resume


def _configure_amp(cfg):
    from mmengine.device import get_device
    if get_device() == 'cpu':
        raise UserInputError(
            '--amp needs an accelerator: mmengine\'s AmpOptimWrapper runs on '
            'GPU, NPU, MLU or MUSA only. On CPU, train without --amp.')
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type == 'AmpOptimWrapper':
        print_log('AMP is already enabled in the config.', logger='current')
        return
    if wrapper_type != 'OptimWrapper':
        raise UserInputError(
            f'--amp replaces OptimWrapper by AmpOptimWrapper, but the config '
            f'uses {wrapper_type!r}. Set optim_wrapper.type yourself.')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def _configure_auto_scale_lr(cfg):
    auto_scale_lr = cfg.get('auto_scale_lr')
    if not auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
        raise UserInputError(
            '--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) in '
            'the config: the total batch size its learning rate was set for.')
    cfg.auto_scale_lr.enable = True


def build_train_config(args):
    """Load the config and apply the command line to it.

    Args:
        args (argparse.Namespace): From :func:`parse_args`.

    Returns:
        mmengine.Config: The config the Runner is built from.
    """
    cfg = load_config(args.config)
    toolbox_of(cfg)
    launch_settings(cfg, args)
    # --cfg-options first: the flags below build on what it sets (e.g.
    # auto_scale_lr.base_batch_size, optim_wrapper.loss_scale) and
    # --no-validate must win over any val_dataloader key it names.
    apply_cfg_options(cfg, args)
    resolve_work_dir(cfg, args, args.config)
    if args.amp:
        _configure_amp(cfg)
    if args.auto_scale_lr:
        _configure_auto_scale_lr(cfg)
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    _configure_resume(cfg, args)
    return cfg


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def main(argv=None):
    """Entry point of ``tools/train.py``; returns the trained model."""
    from ..datasets import check_dataset_layout
    args = parse_args(argv)
    cfg = build_train_config(args)
    # The test dataloader is not used by training.
    check_dataset_layout(cfg, ('train_dataloader', 'val_dataloader'))
    runner = build_runner(cfg)
    runner.train()
    finish_distributed(runner)
    return runner.model
