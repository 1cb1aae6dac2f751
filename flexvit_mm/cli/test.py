"""``tools/test.py``: evaluate a checkpoint with an mmseg, mmdet or
mmpretrain config on the mmengine Runner, with each toolbox's metrics.

Stitched backbones: ``--stitch-id`` evaluates the named stitches;
``--flops-budget`` / ``--latency-budget`` choose one stitch under a budget
(:func:`flexvit_mm.analysis.budget.select_stitch`) and evaluate it the same
way.
"""
import argparse
import json
import os.path as osp

from ..checkpoint import (check_state_dict_fits, load_checkpoint_file,
                          state_dict_of)
from .common import (UserInputError, add_common_args, apply_cfg_options,
                     export_local_rank, finish_distributed, launch_settings,
                     load_config, no_empty_run_left, resolve_work_dir,
                     toolbox_of)
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
    budget = parser.add_argument_group(
        'budget', 'stitched backbones: choose the stitch to evaluate under '
        'a budget instead of naming it with --stitch-id: the best result of '
        'an earlier stitches.json among the stitches that fit, else the one '
        'with the most FLOPs that fits (docs/tools.md#budget)')
    budget.add_argument(
        '--flops-budget', metavar='BUDGET',
        help='at most this many FLOPs per image at the --flops-shape size, '
        'e.g. 40G, 400M, 1.5T, 40e9 (multiply-accumulates, as every GFLOPs '
        'number here)')
    budget.add_argument(
        '--latency-budget', metavar='BUDGET',
        help='at most this latency per image (batch 1), e.g. 25ms, 0.025s, '
        '25000us; measured now unless --latency-table is given')
    budget.add_argument(
        '--stitches-json', metavar='PATH',
        help='per-stitch results of an earlier run (the stitches.json of '
        'tools/test.py --stitch-id all); default WORK_DIR/stitches.json when '
        'it exists')
    budget.add_argument(
        '--latency-table', metavar='PATH',
        help='the stitch_table.json of tools/analysis/get_flops.py for this '
        'config and input size, with latency; without it the latency of '
        'every stitch is measured now (batch 1, the --flops-shape size, the '
        'model\'s device)')
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
    check_budget_args(args)
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
    elif _budget_flags(args):
        # The stitch is filled in by _prepare_budget_run once the model is
        # built; the report is written by _write_budget_report, next to the
        # run's log, so that WORK_DIR/stitches.json is never overwritten.
        cfg.test_cfg = dict(
            type='StitchSweepTestLoop', stitch_ids=None, report=False,
            fp16=cfg.get('test_cfg', {}).get('fp16', False))
    apply_cfg_options(cfg, args)
    resolve_work_dir(cfg, args, args.config)
    return cfg, toolbox


def _budget_flags(args):
    """``'--flops-budget 40G'`` etc. for the budgets given; '' if none."""
    return ' '.join(
        f'{flag} {value}' for flag, value in (
            ('--flops-budget', getattr(args, 'flops_budget', None)),
            ('--latency-budget', getattr(args, 'latency_budget', None)))
        if value is not None)


def check_budget_args(args):
    """The budget flags: readable, and not mixed with what contradicts
    them (before anything is built)."""
    from ..analysis.budget import parse_flops_budget, parse_latency_budget
    for name in ('flops_budget', 'latency_budget', 'stitches_json',
                 'latency_table'):  # a Namespace made by hand may lack them
        if not hasattr(args, name):
            setattr(args, name, None)
    budget = _budget_flags(args)
    if not budget:
        for flag, value in (('--stitches-json', args.stitches_json),
                            ('--latency-table', args.latency_table)):
            if value is not None:
                raise UserInputError(
                    f'{flag} is used with --flops-budget / --latency-budget '
                    '(it informs the choice of a stitch); add a budget or '
                    f'drop {flag}.')
        return
    if args.stitch_id is not None:
        raise UserInputError(
            f'{budget} chooses the stitch, --stitch-id {args.stitch_id} '
            'names it: give one or the other.')
    if args.no_flops:
        raise UserInputError(
            f'--no-flops cannot be combined with {budget}: the choice needs '
            'every stitch\'s FLOPs. Drop --no-flops.')
    if args.out:
        raise UserInputError(
            f'--out cannot be combined with {budget}: the chosen stitch is '
            'evaluated by the stitch sweep, whose report holds its metrics. '
            'Drop --out, or run again with --stitch-id of the chosen stitch.')
    if args.latency_table is not None and args.latency_budget is None:
        raise UserInputError(
            '--latency-table is used with --latency-budget; add one or drop '
            '--latency-table.')
    for flag, value, parse in (
            ('--flops-budget', args.flops_budget, parse_flops_budget),
            ('--latency-budget', args.latency_budget, parse_latency_budget)):
        if value is not None:
            try:
                parse(value)
            except ValueError as error:
                raise UserInputError(f'{flag} {value}: {error}')
    for flag, path in (('--stitches-json', args.stitches_json),
                       ('--latency-table', args.latency_table)):
        if path is not None and not osp.isfile(path):
            raise UserInputError(f'{flag} {path}: the file does not exist.')


def read_previous_results(args, work_dir):
    """The per-stitch results the budget choice compares, read before the
    run: ``--stitches-json``, else ``WORK_DIR/stitches.json`` if there is
    one.

    Returns:
        tuple[list | None, str]: the rows (None when there are none) and
        where they come from, in words, for the log.
    """
    if args.stitches_json is not None:
        path, origin = args.stitches_json, '--stitches-json'
    else:
        path = osp.join(work_dir, 'stitches.json')
        origin = 'found in the work dir; --stitches-json chooses another'
        if not osp.isfile(path):
            return None, (f'no --stitches-json and no {path} (tools/test.py '
                          '--stitch-id all writes it)')
    try:
        with open(path) as f:
            rows = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise UserInputError(f'Cannot read the per-stitch results {path}: '
                             f'{error}')
    return rows, f'results of {path} ({origin})'


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
    check_flops_shape(backbone, args.flops_shape)
    runner._test_loop['flops'] = shared_stitch_table(
        runner, backbone, args.flops_shape)


def check_flops_shape(backbone, shape):
    """A --flops-shape the model cannot run is a user error, raised on
    every rank before rank 0 counts (the others would wait for it)."""
    if shape is None or not hasattr(backbone, 'check_input_shape'):
        return
    try:
        backbone.check_input_shape(shape)
    except ValueError as error:
        raise UserInputError(f'--flops-shape {shape[0]} {shape[1]}: {error}')


def choose_under_budget(args, backbone, shape, flops, previous):
    """Rank 0's part of :func:`_prepare_budget_run`: the table (with
    latency when asked), then :func:`select_stitch`.

    Args:
        args (argparse.Namespace): From :func:`parse_args`, with a budget.
        backbone (SNNetv2): The stitched backbone.
        shape (tuple[int, int]): The input size of the FLOPs (and latency).
        flops (dict): ``{id: dict(flops=...)}`` at ``shape``.
        previous (tuple): From :func:`read_previous_results`.

    Returns:
        dict: ``selection`` (:meth:`Selection.as_dict`) and ``notes`` (where
        the results and the latency came from, in words).
    """
    from mmengine.logging import print_log

    from ..analysis.budget import (load_stitch_results, load_stitch_table,
                                   select_stitch)
    from ..analysis.stitch_table import measure_stitch_latency
    rows, origin = previous
    notes = [origin]
    results = None
    if rows is not None:
        try:
            results = load_stitch_results(rows, backbone)
        except ValueError as error:
            raise ValueError(f'{origin.split(" (")[0]}: {error}')
    table = {
        int(i): dict(flops=row['flops'], route=backbone.space[int(i)].name)
        for i, row in flops.items()
    }
    if args.latency_budget is not None:
        if args.latency_table is not None:
            measured, data = load_stitch_table(args.latency_table, backbone,
                                               shape)
            protocol = data.get('latency') or {}
            with_latency = {
                i: row['latency_ms'] for i, row in measured.items()
                if isinstance(row, dict) and row.get('latency_ms') is not None
            }
            if not with_latency:
                raise ValueError(
                    f'{args.latency_table} has no latency (it was made with '
                    '--no-latency); make it again with latency.')
            if set(table) - set(with_latency):
                notes.append(
                    f'choosing among the {len(set(table) & set(with_latency))}'
                    f' stitches measured in {args.latency_table}')
            table = {i: dict(row, latency_ms=with_latency[i])
                     for i, row in table.items() if i in with_latency}
            notes.append(
                f'latency read from {args.latency_table} (batch '
                f'{protocol.get("batch_size", "?")} on '
                f'{protocol.get("device", "?")}, '
                f'{protocol.get("threads") or "default"} thread(s))')
        else:
            message = (
                f'latency measured now: every stitch at {shape[0]}x'
                f'{shape[1]}, batch 1, on {next(backbone.parameters()).device}'
                ' (pass --latency-table with the stitch_table.json of '
                'tools/analysis/get_flops.py to reuse a measurement)')
            print_log(f'Budget: {message} ...', logger='current')
            measured = measure_stitch_latency(backbone, shape, sorted(table),
                                              batch_size=1)
            for i, row in table.items():
                row['latency_ms'] = measured[i]['latency_ms']
            notes.append(message)
    selection = select_stitch(table, args.flops_budget, args.latency_budget,
                              results)
    return dict(selection=selection.as_dict(), notes=notes)


def _prepare_budget_run(runner, args, previous):
    """Choose the stitch under the budget (rank 0, broadcast to the
    others) and make the test loop evaluate it, as ``--stitch-id N``."""
    from mmengine.dist import broadcast_object_list, get_dist_info
    from mmengine.logging import print_log

    from ..engine.hooks import shared_stitch_table, task_input_shape
    from ..models.stitching.selection import find_stitched_backbone
    budget = _budget_flags(args)
    try:
        backbone = find_stitched_backbone(runner.model)
    except TypeError as error:
        raise UserInputError(f'{budget}: {error}')
    check_flops_shape(backbone, args.flops_shape)
    shape = tuple(args.flops_shape or task_input_shape(runner, backbone))
    flops = shared_stitch_table(runner, backbone, shape)
    outcome = [None]
    if get_dist_info()[0] == 0:
        try:
            outcome[0] = choose_under_budget(args, backbone, shape, flops,
                                             previous)
        except ValueError as error:  # BudgetError, a bad file, ...
            outcome[0] = dict(error=str(error))
    broadcast_object_list(outcome)
    outcome = outcome[0]
    if 'error' in outcome:
        raise UserInputError(f'{budget}: {outcome["error"]}')
    chosen = outcome['selection']
    outcome.update(budget=budget, input_shape=list(shape))
    print_log(
        f'Budget {budget} at {shape[0]}x{shape[1]}: stitch {chosen["id"]} '
        f'({chosen["route"]}, {chosen["gflops"]:.4g} GFLOPs'
        + (f', {chosen["latency_ms"]:.3g} ms' if chosen['latency_ms']
           is not None else '') + f'). Rule: {chosen["reason"]}. '
        + ' '.join(note[0].upper() + note[1:] + '.'
                   for note in outcome['notes']), logger='current')
    runner._test_loop['stitch_ids'] = chosen['id']
    runner._test_loop['flops'] = flops
    return outcome


def _write_budget_report(runner, metrics, outcome):
    """The budget run's report, as ``--stitch-id N`` writes it, but into
    the run's own folder ``WORK_DIR/<timestamp>/`` with ``budget.json``
    (the choice and why), so no earlier ``WORK_DIR/stitches.json`` is
    overwritten."""
    from mmengine.dist import is_main_process
    from mmengine.logging import print_log

    from ..engine.stitch_sweep import _json_safe, write_stitch_report
    from ..models.stitching.selection import find_stitched_backbone
    if not is_main_process():
        return
    backbone = find_stitched_backbone(runner.model)
    loop = runner.test_loop
    write_stitch_report(metrics, runner.log_dir, backbone.describe_stitch,
                        flops=loop.flops, primary_metric=loop.primary_metric)
    with open(osp.join(runner.log_dir, 'budget.json'), 'w') as f:
        json.dump(_json_safe(dict(outcome, metrics=metrics[
            outcome['selection']['id']])), f, indent=1)
    report = osp.join(runner.log_dir, 'stitches.json')
    message = (f'Budget run report: {report} (with .csv, _pareto.png and '
               'budget.json: the choice and why)')
    previous = osp.join(runner.work_dir, 'stitches.json')
    if osp.isfile(previous):
        message += f'; {previous} is left as it was'
    print_log(message + '.', logger='current')


def read_checkpoint_weights(path):
    """The checkpoint's state dict, read safely before anything is built,
    so that an unreadable or untrusted file is refused at once.

    Memory-mapped: the fit check needs only keys and shapes, and the Runner
    reads the file again to load it (EMA and TTA models included).
    """
    return state_dict_of(load_checkpoint_file(path, mmap=True), path)


def main(argv=None):
    """Entry point of ``tools/test.py``; returns the metrics."""
    from ..datasets import check_dataset_layout
    from .train import build_runner
    args = parse_args(argv)
    cfg, toolbox = build_test_config(args)
    previous = read_previous_results(args, cfg.work_dir) \
        if _budget_flags(args) else None
    weights = read_checkpoint_weights(args.checkpoint)
    check_dataset_layout(cfg, dataloader_keys=('test_dataloader', ))
    with no_empty_run_left(cfg):
        runner = build_runner(cfg)
        # mmengine's load_from skips missing, unexpected and mis-shaped keys
        # with a warning: another model's checkpoint would be evaluated as
        # if it were right. Refused before anything is evaluated or written.
        check_state_dict_fits(runner.model, weights, args.checkpoint)
        del weights  # unmaps the file
        if args.out:
            attach_out(runner, toolbox, args.out)
        if args.stitch_id is not None:
            _prepare_stitch_sweep(runner, args)
        outcome = _prepare_budget_run(runner, args, previous) \
            if previous is not None else None
        if args.fuse:
            hook = _make_fuse_hook()
            runner.register_hook(hook, priority=hook.priority)
        metrics = runner.test()
    if outcome is not None:
        _write_budget_report(runner, metrics, outcome)
    finish_distributed(runner)
    return metrics
