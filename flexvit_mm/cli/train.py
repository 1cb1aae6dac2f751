"""``tools/train.py``: train a model from an mmseg, mmdet or mmpretrain
config with the mmengine Runner.

Merges the options of the three toolboxes' own train tools (mmdet and
mmpretrain's ``--resume [PATH]``, ``--auto-scale-lr``, mmpretrain's
``--no-validate``), and adds guards: the dataset folders are checked
before anything is built, a work dir that already holds a run is never
silently reused, and a finished run is not replayed. ``--resume`` finds the
checkpoint of a moved work dir, and every run gets ``RNGStateHook`` for an
exact resume.
"""
import argparse
import glob
import os.path as osp
import re

from mmengine.logging import print_log

from ..checkpoint import load_checkpoint_file
from ..engine import RNGStateHook
from .common import (UserInputError, add_common_args, apply_cfg_options,
                     export_local_rank, finish_distributed, launch_settings,
                     load_config, no_empty_run_left, resolve_work_dir,
                     toolbox_of)


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


_NUMBERED_CHECKPOINT = re.compile(r'(?:iter|epoch)_(\d+)\.pth')


def _last_checkpoint(work_dir, named):
    """The checkpoint that ``WORK_DIR/last_checkpoint`` names, found even
    when the work dir was moved or copied: mmengine writes the path the
    checkpoint had when it was saved, absolute as a rule.

    Args:
        work_dir (str): The work dir.
        named (str): What ``last_checkpoint`` holds.

    Returns:
        str | None: The file named, if it is in ``work_dir``; else the file
        of that name in ``work_dir`` (a moved or copied work dir); else the
        file named, if it exists (mmengine's ``CheckpointHook(out_dir=...)``
        keeps checkpoints outside the work dir); else None.
    """
    if '://' in named:
        return named  # a remote backend's path; mmengine's file client
    path = osp.join(work_dir, named)  # a relative path is work-dir relative
    here = osp.realpath(work_dir)
    if osp.isfile(path) and osp.dirname(osp.realpath(path)) == here:
        return path
    moved = osp.join(work_dir, osp.basename(path))
    if osp.isfile(moved):
        return moved
    return path if osp.isfile(path) else None


def _existing_run(work_dir, strict=True):
    """The checkpoint a previous run left in ``work_dir``, or None.

    Args:
        work_dir (str): The work dir.
        strict (bool): Refuse a ``last_checkpoint`` whose checkpoint cannot
            be found. Otherwise its text is returned: the work dir holds a
            run all the same. Defaults to True.

    Returns:
        str | None: The checkpoint ``last_checkpoint`` names (see
        :func:`_last_checkpoint`), else the ``*.pth`` of the highest
        iteration or epoch in the name, else the newest one.

    Raises:
        UserInputError: ``strict`` and ``last_checkpoint`` names a
            checkpoint that is neither where it says nor in ``work_dir``.
    """
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            named = f.read().strip()
        found = _last_checkpoint(work_dir, named) if named else None
        if found is not None or not strict:
            return found or named or last
        raise UserInputError(
            f'--resume: {last} names the checkpoint {named!r}, which does '
            f'not exist, and {work_dir!r} holds no '
            f'{osp.basename(named)!r} either. Give the checkpoint to '
            'continue from: --resume WORK_DIR/iter_N.pth (last_checkpoint '
            'is left as it is).')

    def order(path):
        number = _NUMBERED_CHECKPOINT.fullmatch(osp.basename(path))
        return (int(number.group(1)) if number else -1, osp.getmtime(path))

    checkpoints = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=order)
    return checkpoints[-1] if checkpoints else None


def _configure_resume(cfg, args):
    if args.resume is None:
        existing = _existing_run(cfg.work_dir, strict=False)
        if existing is not None:
            raise UserInputError(
                f'The work dir {cfg.work_dir!r} already holds a training run '
                f'(checkpoint {existing!r}). Nothing was changed. Pass '
                '--resume to continue that run, or --work-dir NEW_DIR to '
                'start a new one.')
        return
    cfg.resume = True
    if args.resume == 'auto':
        # Named here rather than left to mmengine's find_latest_checkpoint,
        # which takes last_checkpoint's absolute path as it is.
        cfg.load_from = _existing_run(cfg.work_dir)
        if cfg.load_from is None:
            print_log(
                f'--resume: no checkpoint in {cfg.work_dir!r} yet; training '
                'starts from the beginning.',
                logger='current')
        else:
            print_log(f'--resume: continuing from {cfg.load_from}',
                      logger='current')
        return
    if not osp.isfile(args.resume):
        raise UserInputError(
            f'--resume: the checkpoint {args.resume!r} does not exist. Give '
            'the path of a checkpoint written by a run (e.g. '
            'WORK_DIR/iter_1000.pth), or --resume without a path to continue '
            'from the latest checkpoint in --work-dir.')
    cfg.load_from = args.resume


def _add_rng_state_hook(cfg):
    """Give every run :class:`~flexvit_mm.engine.RNGStateHook`, so that its
    checkpoints hold the random states an exact resume needs, whatever the
    config (the toolboxes' own tools do not add it)."""
    def is_rng_state_hook(kind):
        # A registry name, scoped or not ('mmengine.RNGStateHook'), or the
        # class itself.
        return kind is RNGStateHook or (isinstance(kind, str) and
                                        kind.split('.')[-1] == 'RNGStateHook')

    hooks = list(cfg.get('custom_hooks') or [])
    if not any(is_rng_state_hook(hook.get('type')) for hook in hooks):
        hooks.append(dict(type='RNGStateHook'))
    cfg.custom_hooks = hooks


def finished_run(cfg, resume_option='--resume'):
    """Whether the checkpoint a run resumes from has already trained as
    long as ``train_cfg`` asks: resuming it would replay its last
    iterations.

    Args:
        cfg (mmengine.Config): From :func:`build_train_config`.
        resume_option (str): How the user resumed, for the message.
            Defaults to '--resume'.

    Returns:
        str | None: What to tell the user, or None to train.
    """
    if not cfg.get('resume') or not cfg.get('load_from') or (
            '://' in cfg.load_from):  # remote: mmengine's file backends
        return None
    train_cfg = cfg.get('train_cfg') or {}
    for unit, limit in (('iter', 'max_iters'), ('epoch', 'max_epochs')):
        if train_cfg.get(limit) is not None:
            break
    else:
        return None
    # The 'meta' device reads the pickle but none of the tensors' data.
    checkpoint = load_checkpoint_file(cfg.load_from, map_location='meta')
    done = (checkpoint.get('meta') or {}).get(unit) \
        if isinstance(checkpoint, dict) else None
    if done is None or done < train_cfg[limit]:
        return None
    return (
        f'Nothing to train: the checkpoint {cfg.load_from} is at {unit} '
        f'{done}, and train_cfg.{limit} is {train_cfg[limit]}, so the run '
        'is finished. Nothing was changed. To train longer, resume with a '
        f'higher limit: {resume_option} --cfg-options '
        f'train_cfg.{limit}=N '
        f'(N > {done}; the param_scheduler milestones stay as the config '
        'sets them).')


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


def _check_config_amp(cfg):
    """A config that already asks for AMP cannot train on CPU: say how to
    train it there, before mmengine's bare assertion does."""
    from mmengine.device import get_device
    optim_wrapper = cfg.get('optim_wrapper') or {}
    wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type == 'AmpOptimWrapper' and get_device() == 'cpu':
        raise UserInputError(
            'The config trains with AmpOptimWrapper (mixed precision), '
            'which needs an accelerator (GPU, NPU, MLU or MUSA); this '
            'machine has none. To train on CPU in full precision, add '
            '--cfg-options optim_wrapper.type=OptimWrapper.')
    if wrapper_type == 'OptimWrapper':
        # What a base config set for AmpOptimWrapper, after the type was
        # switched to OptimWrapper (which takes neither) by --cfg-options.
        dropped = [key for key in ('loss_scale', 'dtype')
                   if optim_wrapper.pop(key, None) is not None]
        if dropped:
            print_log(f'OptimWrapper: ignoring the AMP settings {dropped}.',
                      logger='current')


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
    else:
        _check_config_amp(cfg)
    if args.auto_scale_lr:
        _configure_auto_scale_lr(cfg)
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    _configure_resume(cfg, args)
    _add_rng_state_hook(cfg)
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
    finished = finished_run(cfg, '--resume' if args.resume == 'auto' else
                            f'--resume {args.resume}')
    if finished:
        print_log(finished, logger='current')
        return None
    # The test dataloader is not used by training.
    check_dataset_layout(cfg, ('train_dataloader', 'val_dataloader'))
    with no_empty_run_left(cfg):
        runner = build_runner(cfg)
        runner.train()
    finish_distributed(runner)
    return runner.model
