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
    """Call ``switch_to_deploy()`` on every module that has one.

    Only the outermost such modules are called: a module's
    ``switch_to_deploy`` is responsible for its own submodules, and fusing
    one twice is an error. Modules already fused (``deploy`` is True, e.g.
    built with ``deploy=True``) are skipped.

    Args:
        model (nn.Module): The model, in eval mode.

    Returns:
        list[str]: the names of the modules fused ('' for the model).

    Raises:
        UserInputError: if some module is in training mode (a fused
            BatchNorm computes with its running statistics, a training one
            with the batch's: fusing would change the function), or if no
            module can be fused.
    """
    training = [name or type(model).__name__
                for name, m in model.named_modules() if m.training]
    if training:
        raise UserInputError(
            '--fuse: the model is in training mode (modules '
            f'{training[:5]}{" ..." if len(training) > 5 else ""}); fusing '
            'folds the BatchNorm running statistics and is only valid in '
            'eval mode. Call model.eval() first (tools/test.py does), or '
            'check the modules whose train() ignores eval().')
    fused, done, skipped = [], [], []
    for name, module in list(model.named_modules()):
        if not callable(getattr(module, 'switch_to_deploy', None)):
            continue
        if any(name.startswith(p + '.') or p == '' for p in done):
            continue  # inside a module already handled
        done.append(name)
        if getattr(module, 'deploy', False) is True:
            skipped.append(name)
            continue
        module.switch_to_deploy()
        # the fused convs/linears are new modules, created in training mode
        module.train(False)
        fused.append(name)
    if not fused and not skipped:
        raise UserInputError(
            '--fuse: no module of this model has switch_to_deploy(); there '
            'is nothing to fuse. Drop --fuse.')
    return fused


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


def _task_input_shape(runner, backbone):
    """The input size the config trains at: its StitchSamplingHook's, or
    the first anchor's ``img_size``."""
    from ..engine.hooks import StitchSamplingHook
    for hook in runner.hooks:
        if isinstance(hook, StitchSamplingHook):
            return hook._input_shape(backbone)
    return tuple(backbone.anchors[0].patch_embed.img_size)


def _prepare_stitch_sweep(runner, args):
    """Check the ids against the model (a clear error before any data is
    read) and give the sweep the per-stitch GFLOPs table."""
    import os.path as osp

    from mmengine.dist import broadcast_object_list, get_dist_info

    from ..analysis.stitch_table import load_or_compute_stitch_table
    from ..models.stitching.selection import (find_stitched_backbone,
                                              parse_stitch_ids)
    try:
        backbone = find_stitched_backbone(runner.model)
        parse_stitch_ids(args.stitch_id, backbone.stitch_ids)
    except (TypeError, ValueError) as error:
        raise UserInputError(f'--stitch-id {args.stitch_id}: {error}')
    if args.no_flops:
        return
    shape = tuple(args.flops_shape or _task_input_shape(runner, backbone))
    table = [None]
    if get_dist_info()[0] == 0:
        table[0] = load_or_compute_stitch_table(
            backbone, shape,
            osp.join(runner.work_dir,
                     f'stitch_flops_{shape[0]}x{shape[1]}.json'))
    broadcast_object_list(table)
    runner._test_loop['flops'] = table[0]


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
