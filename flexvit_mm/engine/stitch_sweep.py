"""Evaluate several stitches of a stitched backbone in one pass over the
test set, and report them (table, JSON, CSV, accuracy-vs-FLOPs plot).

:class:`StitchSweepTestLoop` reads and preprocesses every batch once and
runs the forward of every requested stitch on it, each stitch with its own
evaluator (its own metric instances). Use it from any mmseg, mmdet or
mmpretrain config::

    custom_imports = dict(imports=['flexvit_mm', 'flexvit_mm.engine'])
    test_cfg = dict(type='StitchSweepTestLoop', stitch_ids='all')

``runner.test()`` then returns ``{stitch_id: metrics}``.
"""
import contextlib
import copy
import csv
import json
import logging
import math
import numbers
import os
import os.path as osp
import time
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from mmengine.dist import is_main_process
from mmengine.evaluator import Evaluator
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import LOOPS
from mmengine.runner.amp import autocast
from mmengine.runner.base_loop import BaseLoop
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader

from ..models.stitching.selection import (find_stitched_backbone,
                                          format_ids, parse_stitch_ids,
                                          set_stitch)

try:  # private helpers of mmengine's TestLoop (mmengine >= 0.10)
    from mmengine.runner.loops import _parse_losses, _update_losses
except ImportError:  # pragma: no cover - older mmengine: no test losses
    _parse_losses = None

    def _update_losses(outputs, losses):
        return outputs, losses


__all__ = ['StitchSweepTestLoop', 'write_stitch_report',
           'keep_previous_report', 'choose_primary_metric', 'pareto_front',
           'plot_metrics', 'LOWER_IS_BETTER']

# Metrics preferred as the plot's y axis, in order.
PRIMARY_METRICS = ('mIoU', 'accuracy/top1', 'coco/bbox_mAP', 'rmse', 'd1')
# Drawn next to a primary metric (by last path component) in the plot.
COMPANION_METRICS = {
    'rmse': ('d1', ),
    'd1': ('rmse', ),
    'bbox_map': ('segm_mAP', ),
}
# Metrics (last path component) for which lower is better.
LOWER_IS_BETTER = frozenset({
    'rmse', 'rmse_log', 'abs_rel', 'sq_rel', 'log10', 'silog', 'mae', 'mse',
    'loss', 'error', 'err'
})


def _metric_leaf(name: str) -> str:
    return name.rsplit('/', 1)[-1].lower()


def lower_is_better(name: str) -> bool:
    leaf = _metric_leaf(name)
    return leaf in LOWER_IS_BETTER or leaf.endswith('_loss')


# --------------------------------------------------------------------- loop
def _copy_for_predict(data):
    """A copy of preprocessed data whose data samples may be mutated.

    ``predict`` of mmseg, mmdet and mmpretrain models writes the
    predictions into the data samples it is given; every stitch gets its
    own deep copy of them. Tensors (the batch inputs) are shared.
    """
    if isinstance(data, dict):
        data = dict(data)
        if 'data_samples' in data:
            data['data_samples'] = copy.deepcopy(data['data_samples'])
        return data
    if isinstance(data, (list, tuple)):
        return type(data)(
            item if isinstance(item, torch.Tensor) else copy.deepcopy(item)
            for item in data)
    return data


@LOOPS.register_module()
class StitchSweepTestLoop(BaseLoop):
    """Test several stitches while reading every batch once.

    Constructed like mmengine's ``TestLoop`` (the Runner passes
    ``runner``, ``dataloader`` and ``evaluator``), plus the stitches to
    test. For every batch the data preprocessor runs once; then, for each
    stitch, the stitch is selected with :func:`set_stitch`, the model runs
    in ``predict`` mode on a copy of the data samples and that stitch's own
    evaluator processes the outputs. Hooks are called as by ``TestLoop``:
    ``before_test_iter`` / ``after_test_iter`` once per batch (the latter
    with the outputs of the last stitch) and ``after_test_epoch`` with every
    stitch's metrics flattened as ``stitch_<id>/<metric>``.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The test dataloader.
        evaluator (dict | list | Evaluator): The ``test_evaluator`` config;
            one Evaluator is built from it per stitch (an Evaluator object
            is deep-copied per stitch).
        fp16 (bool): Run the forwards under autocast. Defaults to False.
        stitch_ids (str | int | Sequence): The stitches to test, anything
            :func:`parse_stitch_ids` reads: ``'all'`` (the default), an id,
            ``'3,12,80'``, ``'2-12'`` or a list.
        report (bool): Write ``stitches.json``, ``stitches.csv`` and
            ``stitches_pareto.png`` into the work dir and print the table
            (rank 0). Defaults to True.
        flops (dict | str, optional): Per-stitch FLOPs for the report:
            ``{id: flops}``, ``{id: dict(flops=..., params=...)}`` (the table
            of ``flexvit_mm.analysis.stitch_table``) or the path of a JSON
            file holding either (or its ``{'table': ...}`` cache format).
        primary_metric (str, optional): The report's y axis; by default the
            first of mIoU, accuracy/top1, coco/bbox_mAP, rmse, d1 found.
        share_prefixes (bool): Compute the first steps that stitches share
            once per batch (``SNNetv2.sharing_prefixes``) and run the
            stitches in the depth-first order of their route tree. The
            results are bit-identical to running each stitch alone; False
            runs every stitch from scratch. Defaults to True.

    Returns of :meth:`run`:
        dict[int, dict]: ``{stitch_id: metrics}``.
    """
    phase = 'test'

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List],
                 fp16: bool = False,
                 stitch_ids: Union[str, int, Sequence] = 'all',
                 report: bool = True,
                 flops: Union[None, str, dict] = None,
                 primary_metric: Optional[str] = None,
                 share_prefixes: bool = True):
        super().__init__(runner, dataloader)
        self.share_prefixes = share_prefixes
        self._prefix_cache = None
        self._evaluator_cfg = evaluator
        self.stitch_ids: List[int] = []
        self.evaluators: Dict[int, Evaluator] = {}
        if not self._deferred(stitch_ids):
            backbone = find_stitched_backbone(runner.model)
            self._build_evaluators(
                parse_stitch_ids(stitch_ids, backbone.stitch_ids))
        self.fp16 = fp16
        self.report = report
        self.flops = flops
        self.primary_metric = primary_metric
        self.test_losses: Dict[int, Dict[str, HistoryBuffer]] = {}
        self.results: Dict[int, dict] = {}
        self.rows: Optional[List[dict]] = None
        self._bar: Optional[ProgressBar] = None

    # -------------------------------------------------------------- helpers
    def _deferred(self, stitch_ids) -> bool:
        """Whether the ids can only be resolved when the loop runs."""
        return False

    def _build_evaluators(self, stitch_ids: List[int]) -> None:
        evaluator = self._evaluator_cfg
        self.stitch_ids = list(stitch_ids)
        self.evaluators = {}
        for stitch_id in self.stitch_ids:
            if isinstance(evaluator, (dict, list)):
                self.evaluators[stitch_id] = self.runner.build_evaluator(
                    copy.deepcopy(evaluator))
            elif isinstance(evaluator, Evaluator):
                self.evaluators[stitch_id] = copy.deepcopy(evaluator)
            else:
                raise TypeError(
                    'evaluator must be a dict, a list or an Evaluator, got '
                    f'{type(evaluator).__name__}.')
        # ``runner.{test,val}_evaluator`` is this loop's ``evaluator``: the
        # last stitch's, whose outputs the iteration hooks see.
        self.evaluator = self.evaluators[self.stitch_ids[-1]]
        if hasattr(self.dataloader.dataset, 'metainfo'):
            for ev in self.evaluators.values():
                ev.dataset_meta = self.dataloader.dataset.metainfo
            self.runner.visualizer.dataset_meta = \
                self.dataloader.dataset.metainfo
        else:
            print_log(
                f'Dataset {self.dataloader.dataset.__class__.__name__} has no '
                'metainfo. ``dataset_meta`` in evaluator, metric and '
                'visualizer will be None.',
                logger='current',
                level=logging.WARNING)

    def _plain_model(self):
        model = self.runner.model
        while is_model_wrapper(model):
            model = model.module
        return model

    def _num_batches(self) -> Optional[int]:
        try:
            return len(self.dataloader)
        except TypeError:
            return None

    # ------------------------------------------------------------------ run
    def run(self) -> Dict[int, dict]:
        """Launch the sweep; returns ``{stitch_id: metrics}``."""
        backbone = find_stitched_backbone(self.runner.model)
        previous = backbone.stitch_id
        phase = self.phase
        self.runner.call_hook(f'before_{phase}')
        self.runner.call_hook(f'before_{phase}_epoch')
        self.runner.model.eval()
        self.test_losses = {i: dict() for i in self.stitch_ids}

        num_batches = self._num_batches()
        print_log(
            f'Stitch sweep: {len(self.stitch_ids)} stitches '
            f'({format_ids(self.stitch_ids)}) x '
            f'{num_batches if num_batches is not None else "?"} batches, '
            'each batch read once.',
            logger='current')
        self._bar = None
        if is_main_process() and num_batches:
            self._bar = ProgressBar(num_batches * len(self.stitch_ids))
        sharing = (self.share_prefixes and len(self.stitch_ids) > 1
                   and hasattr(backbone, 'sharing_prefixes'))
        with (backbone.sharing_prefixes(self.stitch_ids) if sharing
              else contextlib.nullcontext()) as cache:
            self._prefix_cache = cache
            try:
                for idx, data_batch in enumerate(self.dataloader):
                    self.run_iter(idx, data_batch)
            finally:
                self._prefix_cache = None
                set_stitch(self.runner.model, previous)
        if cache is not None and cache.steps_run:
            total = cache.steps_run + cache.steps_reused
            print_log(
                f'Shared prefixes: {cache.steps_reused} of {total} '
                f'route steps ({cache.steps_reused / total:.0%}) reused '
                'instead of recomputed.', logger='current')
        if self._bar is not None:
            self._bar.file.write('\n')
            self._bar.file.flush()

        results: Dict[int, dict] = {}
        for stitch_id in self.stitch_ids:
            metrics = self.evaluators[stitch_id].evaluate(
                len(self.dataloader.dataset))
            if self.test_losses[stitch_id] and _parse_losses is not None:
                metrics.update(
                    _parse_losses(self.test_losses[stitch_id], phase))
            results[stitch_id] = metrics
        self.results = results

        flat = {
            f'stitch_{stitch_id}/{key}': value
            for stitch_id, metrics in results.items()
            for key, value in metrics.items()
        }
        flat = self._epoch_metrics(results, flat)
        if self.report and is_main_process():
            self.rows = write_stitch_report(
                results,
                self.runner.work_dir,
                backbone.describe_stitch,
                flops=_load_flops(self.flops),
                primary_metric=self.primary_metric)
        self.runner.call_hook(f'after_{phase}_epoch', metrics=flat)
        self.runner.call_hook(f'after_{phase}')
        return self._returned(results, flat)

    def _epoch_metrics(self, results, flat) -> dict:
        """The metrics given to the ``after_*_epoch`` hooks."""
        return flat

    def _returned(self, results, flat):
        return results

    @torch.no_grad()
    def run_iter(self, idx, data_batch) -> None:
        """Run every stitch on one batch."""
        self.runner.call_hook(
            f'before_{self.phase}_iter', batch_idx=idx,
            data_batch=data_batch)
        model = self._plain_model()
        fast = (not isinstance(model, BaseTTAModel)
                and callable(getattr(model, 'data_preprocessor', None))
                and callable(getattr(model, '_run_forward', None)))
        outputs = None
        cache = self._prefix_cache
        order = self.stitch_ids
        if cache is not None:
            cache.clear()  # states of the previous batch
            order = cache.order
        with autocast(enabled=self.fp16):
            data = model.data_preprocessor(data_batch, False) if fast \
                else None
            for stitch_id in order:
                set_stitch(model, stitch_id)
                if fast:
                    outputs = model._run_forward(
                        _copy_for_predict(data), mode='predict')
                else:  # TTA models: their own step per stitch
                    step = getattr(self.runner.model, f'{self.phase}_step')
                    outputs = step(_copy_for_predict(data_batch))
                outputs, self.test_losses[stitch_id] = _update_losses(
                    outputs, self.test_losses[stitch_id])
                self.evaluators[stitch_id].process(
                    data_samples=outputs, data_batch=data_batch)
                if self._bar is not None:
                    self._bar.update()
        self.runner.call_hook(
            f'after_{self.phase}_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs)


def _load_flops(flops):
    if flops is None or not isinstance(flops, str):
        return flops
    with open(flops) as f:
        table = json.load(f)
    if isinstance(table, dict) and isinstance(table.get('table'), dict):
        table = table['table']
    return table


# ------------------------------------------------------------------- report
def report_scalar(value):
    """A float for numeric scalars (python, numpy, 0-d/1-element tensors),
    else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Number):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if hasattr(value, 'item') and getattr(value, 'size', None) == 1:
        try:
            return float(value.item())
        except (TypeError, ValueError):
            return None
    return None


def _json_safe(value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    scalar = report_scalar(value)
    if scalar is not None:
        return scalar if math.isfinite(scalar) else None
    if isinstance(value, (str, type(None), bool)):
        return value
    if hasattr(value, 'tolist'):  # tensors, numpy arrays
        return _json_safe(value.tolist())
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return str(value)


def _lookup(table, stitch_id, key, plain=True):
    """``table[id]`` as a number: a mapping or callable giving a number or
    a dict with ``key``."""
    if table is None:
        return None
    if callable(table) and not hasattr(table, 'get'):
        value = table(stitch_id)
    else:
        value = table.get(stitch_id, table.get(str(stitch_id)))
    if isinstance(value, dict):
        value = value.get(key)
    elif not plain:  # a plain number is not this key's value
        return None
    return report_scalar(value)


def choose_primary_metric(metric_names: Sequence[str],
                          primary_metric: Optional[str] = None) -> str:
    """The metric to plot: ``primary_metric`` if given, else the first of
    :data:`PRIMARY_METRICS` present (exactly, or as the last part of a
    prefixed name), else the first metric."""
    names = list(metric_names)
    if primary_metric is not None:
        if primary_metric not in names:
            raise ValueError(f'primary_metric {primary_metric!r} is not a '
                             f'metric of the results: {names}.')
        return primary_metric
    if not names:
        raise ValueError('The results hold no scalar metric to report.')
    for wanted in PRIMARY_METRICS:
        if wanted in names:
            return wanted
    for wanted in PRIMARY_METRICS:
        for name in names:
            if name.endswith('/' + wanted):
                return name
    return names[0]


def pareto_front(points, lower_better: bool = False) -> List:
    """Keys of the points on the cost/quality Pareto frontier.

    Args:
        points (Sequence[tuple]): ``(key, cost, value)``; lower cost is
            better, higher value is better unless ``lower_better``.
        lower_better (bool): Whether a lower value is better.

    Returns:
        list: Keys on the frontier, by increasing cost. A point is on it
        when no other point has a cost that is not higher and a value that
        is better (ties: the cheaper one, then the better one, is kept).
    """
    sign = -1.0 if lower_better else 1.0
    ordered = sorted(points, key=lambda p: (p[1], -sign * p[2]))
    front, best = [], -math.inf
    for key, cost, value in ordered:
        if sign * value > best:
            front.append(key)
            best = sign * value
    return front


def _format(value, digits=2):
    if value is None:
        return '-'
    if isinstance(value, float):
        if value != 0 and abs(value) < 10**-digits:
            return f'{value:.{digits}g}'
        return f'{value:.{digits}f}'
    return str(value)


def write_stitch_report(results: Dict[int, dict],
                        work_dir: str,
                        describe: Union[Callable, Dict, None],
                        flops=None,
                        params=None,
                        primary_metric: Optional[str] = None) -> List[dict]:
    """Write a sweep's per-stitch results as a table, JSON, CSV and plot.

    A report already in ``work_dir`` (e.g. of an all-stitch sweep) is not
    overwritten: its files are renamed ``stitches_<its time>.*`` first.

    Files written into ``work_dir``: ``stitches.json`` (a list of rows),
    ``stitches.csv`` (scalar columns) and ``stitches_pareto.png`` (the
    primary metric against GFLOPs, every stitch a point, the Pareto
    frontier a line with its ids labelled; against the stitch id when no
    FLOPs are known). The table is printed with ``print_log``.

    Args:
        results (dict[int, dict]): ``{stitch_id: metrics}``, as returned by
            :class:`StitchSweepTestLoop`.
        work_dir (str): Output folder (created if needed).
        describe (callable | dict | None): ``id -> dict`` with ``route``,
            ``kind`` and optionally ``gflops`` (GFLOPs), ``flops`` (FLOPs
            count) and ``params`` (count), e.g. ``backbone.describe_stitch``.
        flops (dict | callable, optional): ``id -> FLOPs`` as a count (not
            G), or ``id -> dict(flops=..., params=...)`` (the stitch table
            of ``flexvit_mm.analysis.stitch_table``). Overrides ``describe``.
        params (dict | callable, optional): ``id -> parameter count``.
            Overrides ``describe`` and ``flops``' params.
        primary_metric (str, optional): The plotted metric; by default the
            first of mIoU, accuracy/top1, coco/bbox_mAP, rmse, d1 present.
            Lower-is-better metrics (rmse, abs_rel, ...) are handled.

    Returns:
        list[dict]: The rows, by stitch id: ``id``, ``route``, ``kind``,
        ``gflops``, ``params``, ``pareto`` and every metric.
    """
    os.makedirs(work_dir, exist_ok=True)
    kept = keep_previous_report(work_dir)
    if kept:
        print_log(f'An earlier stitch report in {work_dir} was kept as '
                  f'{", ".join(kept)}.', logger='current')
    ids = sorted(results)
    rows: List[dict] = []
    metric_names: List[str] = []
    for stitch_id in ids:
        for name, value in results[stitch_id].items():
            if name not in metric_names and report_scalar(value) is not None:
                metric_names.append(name)

    for stitch_id in ids:
        if describe is None:
            info = {}
        elif callable(describe) and not hasattr(describe, 'get'):
            info = dict(describe(stitch_id) or {})
        else:
            info = dict(describe.get(stitch_id, {}) or {})
        gflops = _lookup(flops, stitch_id, 'flops')
        gflops = gflops / 1e9 if gflops is not None else None
        if gflops is None:
            gflops = report_scalar(info.get('gflops'))
        if gflops is None:
            info_flops = report_scalar(info.get('flops'))
            gflops = info_flops / 1e9 if info_flops is not None else None
        n_params = _lookup(params, stitch_id, 'params')
        if n_params is None:
            n_params = _lookup(flops, stitch_id, 'params', plain=False)
        if n_params is None:
            n_params = report_scalar(info.get('params'))
        row = dict(
            id=int(stitch_id),
            route=str(info.get('route', '')),
            kind=str(info.get('kind', '')),
            gflops=gflops,
            params=int(n_params) if n_params is not None else None,
            pareto=False)
        for name, value in results[stitch_id].items():
            row[name] = _json_safe(value)
        rows.append(row)

    primary = (choose_primary_metric(metric_names, primary_metric)
               if metric_names else None)
    lower = primary is not None and lower_is_better(primary)
    have_flops = bool(rows) and all(r['gflops'] is not None for r in rows)
    if primary is not None and have_flops:
        front = set(pareto_front(
            [(r['id'], r['gflops'], r[primary]) for r in rows
             if r[primary] is not None], lower_better=lower))
        for row in rows:
            row['pareto'] = row['id'] in front

    # JSON
    with open(osp.join(work_dir, 'stitches.json'), 'w') as f:
        json.dump(rows, f, indent=1, allow_nan=False)
    # CSV (scalar columns only)
    columns = ['id', 'route', 'kind', 'gflops', 'params', 'pareto'
               ] + metric_names
    with open(osp.join(work_dir, 'stitches.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                ['' if row.get(c) is None else row.get(c) for c in columns])

    _print_table(rows, metric_names, primary, lower)
    _plot(rows, plot_metrics(metric_names, primary) if primary else [],
          have_flops, osp.join(work_dir, 'stitches_pareto.png'))
    return rows


REPORT_FILES = ('stitches.json', 'stitches.csv', 'stitches_pareto.png')


def keep_previous_report(work_dir: str,
                         names: Sequence[str] = REPORT_FILES) -> List[str]:
    """Rename an earlier report's files so that a new one never destroys
    it: ``stitches.json`` -> ``stitches_<time>.json`` (``<time>`` when the
    first file was written; ``stitches_pareto.png`` ->
    ``stitches_<time>_pareto.png``).

    Args:
        work_dir (str): The folder of the report.
        names (Sequence[str]): The report's files; the first one decides
            whether there is an earlier report and its time, and its stem
            is what the time is added to in every name.

    Returns:
        list[str]: The new names of the files kept (empty when there was no
        earlier report).
    """
    old = osp.join(work_dir, names[0])
    if not osp.isfile(old):
        return []
    stamp = time.strftime('%Y%m%d_%H%M%S',
                          time.localtime(osp.getmtime(old)))
    base = osp.splitext(names[0])[0]
    moved = []
    for name in names:
        path = osp.join(work_dir, name)
        if osp.isfile(path):
            stem, ext = osp.splitext(name)
            stem = stem.replace(base, f'{base}_{stamp}', 1)
            target = osp.join(work_dir, stem + ext)
            suffix = 1
            while osp.exists(target):
                target = osp.join(work_dir, f'{stem}-{suffix}{ext}')
                suffix += 1
            os.replace(path, target)
            moved.append(osp.basename(target))
    return moved


def _print_table(rows, metric_names, primary, lower):
    header = ['id', 'kind', 'route', 'GFLOPs', 'params(M)'] + metric_names
    if primary is not None and any(r['pareto'] for r in rows):
        header.append('pareto')
    lines = []
    for row in rows:
        cells = [
            str(row['id']), row['kind'] or '-', row['route'] or '-',
            _format(row['gflops']),
            _format(row['params'] / 1e6 if row['params'] is not None
                    else None),
        ] + [_format(row.get(m), 4) for m in metric_names]
        if header[-1] == 'pareto':
            cells.append('*' if row['pareto'] else '')
        lines.append(cells)
    widths = [max(len(header[i]), *(len(c[i]) for c in lines))
              if lines else len(header[i]) for i in range(len(header))]
    numeric = {0, 3, 4} | set(range(5, 5 + len(metric_names)))

    def fmt(cells):
        return ' | '.join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = '-+-'.join('-' * w for w in widths)
    text = [fmt(header), rule] + [fmt(c) for c in lines]
    title = f'Stitch sweep: {len(rows)} stitches'
    if primary is not None:
        title += (f'; primary metric {primary} '
                  f'({"lower" if lower else "higher"} is better)')
    print_log('\n'.join([title] + text), logger='current')


def plot_metrics(metric_names: Sequence[str], primary: str) -> List[str]:
    """The metrics drawn in the Pareto plot: the primary one and its task's
    companion (depth: RMSE and delta1; detection: box and mask AP)."""
    metrics = [primary]
    prefix = primary[:len(primary) - len(primary.rsplit('/', 1)[-1])]
    for companion in COMPANION_METRICS.get(_metric_leaf(primary), ()):
        if prefix + companion in metric_names:
            metrics.append(prefix + companion)
    return metrics


def _plot_panel(ax, rows, metric, have_flops):
    lower = lower_is_better(metric)
    # (row, metric value) for the rows that have a scalar value.
    points = [(r, v) for r, v in ((r, report_scalar(r.get(metric)))
                                  for r in rows) if v is not None]
    xkey = 'gflops' if have_flops else 'id'
    if not points:
        ax.text(0.5, 0.5, 'no scalar metric to plot', ha='center',
                va='center', transform=ax.transAxes)
        return
    ax.scatter([r[xkey] for r, _ in points], [v for _, v in points], s=18,
               color='tab:blue', alpha=0.6,
               label=f'stitches ({len(points)})')
    if have_flops:
        keys = set(pareto_front([(r['id'], r['gflops'], v)
                                 for r, v in points], lower_better=lower))
        front = sorted(((r, v) for r, v in points if r['id'] in keys),
                       key=lambda p: p[0]['gflops'])
        ax.plot([r['gflops'] for r, _ in front], [v for _, v in front],
                '-o', color='tab:red', markersize=5,
                label=f'Pareto frontier ({len(front)})')
        for r, v in front:
            ax.annotate(str(r['id']), (r['gflops'], v),
                        textcoords='offset points', xytext=(3, 4),
                        fontsize=7, color='tab:red')
    elif len(points) <= 40:  # more labels would overlap
        for r, v in points:
            ax.annotate(str(r['id']), (r['id'], v),
                        textcoords='offset points', xytext=(3, 4),
                        fontsize=6)
    ax.legend(loc='best', fontsize=8)
    ax.set_xlabel('GFLOPs' if have_flops else 'stitch id')
    ax.set_ylabel(f'{metric} ({"lower" if lower else "higher"} is better)')
    ax.grid(True, alpha=0.3)


def _plot(rows, metrics, have_flops, path):
    """One panel per metric (its own Pareto frontier), side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = metrics or [None]
    fig = Figure(figsize=(7 * len(metrics), 5.5), dpi=110)
    FigureCanvasAgg(fig)
    for index, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), index + 1)
        if metric is None:
            ax.text(0.5, 0.5, 'no scalar metric to plot', ha='center',
                    va='center', transform=ax.transAxes)
            continue
        _plot_panel(ax, rows, metric, have_flops)
    if have_flops:
        fig.suptitle('Stitches: quality vs cost')
    else:
        fig.suptitle('Stitches (GFLOPs unknown: plotted against stitch id)')
        print_log(
            'Stitch report: no FLOPs given, so stitches_pareto.png plots '
            'the metric against the stitch id and marks no Pareto frontier.',
            logger='current')
    fig.tight_layout()
    fig.savefig(path)


def anchors_and_middle(table: Dict[int, dict]) -> List[int]:
    """The two anchors (ids 0 and 1) and the stitch whose FLOPs are
    closest to the middle of the range (the lower id on ties).

    Args:
        table (dict): ``{id: dict(flops=...)}``, the per-stitch table.
    """
    flops = {int(i): row['flops'] for i, row in table.items()}
    middle = (min(flops.values()) + max(flops.values())) / 2
    closest = min(sorted(flops), key=lambda i: abs(flops[i] - middle))
    return sorted({0, 1, closest})


@LOOPS.register_module()
class StitchSweepValLoop(StitchSweepTestLoop):
    """Validate a fixed set of stitches during training.

    The official code validated whichever stitch had been sampled last; this
    loop evaluates the same stitches at every validation, each with its own
    evaluator, reading every batch once, so a run shows the whole family
    improving. The hooks receive each stitch's metrics as
    ``stitch_<id>/<metric>`` (logged to the scalars file and any
    visualizer backend) plus, under the plain metric names, their mean over
    the validated stitches, which ``CheckpointHook(save_best=...)`` can use.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The validation dataloader.
        evaluator (dict | list | Evaluator): The ``val_evaluator`` config.
        fp16 (bool): Run the forwards under autocast. Defaults to False.
        stitch_ids (str | int | Sequence): ``'anchors+middle'`` (default):
            the two anchors and the stitch in the middle of the FLOPs range
            (counted at the :class:`StitchSamplingHook`'s input size, or the
            first anchor's ``img_size``); or anything
            :func:`parse_stitch_ids` reads (``'all'``, ``'0,1,40'``, ...).
    """
    phase = 'val'

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, List],
                 fp16: bool = False,
                 stitch_ids: Union[str, int, Sequence] = 'anchors+middle'):
        self._requested_ids = stitch_ids
        super().__init__(runner, dataloader, evaluator, fp16=fp16,
                         stitch_ids=stitch_ids, report=False)

    def _deferred(self, stitch_ids) -> bool:
        return stitch_ids == 'anchors+middle'

    def run(self) -> dict:
        """Validate the stitches; returns the metrics the hooks received."""
        if not self.stitch_ids:
            backbone = find_stitched_backbone(self.runner.model)
            from .hooks import shared_stitch_table
            self.flops = shared_stitch_table(self.runner, backbone)
            self._build_evaluators(anchors_and_middle(self.flops))
            print_log(
                'StitchSweepValLoop: validating stitches '
                f'{format_ids(self.stitch_ids)} (the anchors and the middle '
                'of the FLOPs range).', logger='current')
        return super().run()

    def _epoch_metrics(self, results, flat) -> dict:
        names = [name for name in results[self.stitch_ids[0]]
                 if all(report_scalar(results[i].get(name)) is not None
                        for i in self.stitch_ids)]
        for name in names:
            flat[name] = sum(report_scalar(results[i][name])
                             for i in self.stitch_ids) / len(self.stitch_ids)
        lines = [f'stitch {i:>4}: ' + ', '.join(
            f'{name} {_format(report_scalar(results[i][name]), 4)}'
            for name in names) for i in self.stitch_ids]
        print_log('Validation per stitch (the plain metric names hold their '
                  'mean):\n' + '\n'.join(lines), logger='current')
        return flat

    def _returned(self, results, flat):
        return flat
