"""The per-stitch complexity table: GFLOPs, parameters and (optionally)
measured latency of every stitch.

One function, :func:`compute_stitch_table`, computes it for the
FLOPs-grouped sampler, the validation loop, the test sweep report, the
budget-driven stitch choice and ``tools/analysis/get_flops.py`` alike.
"""
import contextlib
import json
import os
import os.path as osp
import sys
from typing import Dict, Optional, Sequence, Tuple

import torch

from .complexity import count_flops

__all__ = [
    'stitch_table_key', 'compute_stitch_table', 'latency_protocol',
    'measure_stitch_latency', 'load_or_compute_stitch_table'
]

#: Defaults of the latency measurement (untimed and timed rounds; each
#: round runs every stitch once, round-robin).
LATENCY_WARMUP = 3
LATENCY_REPEATS = 10


def stitch_table_key(backbone, input_shape: Tuple[int, int]) -> dict:
    """What the table depends on; a cached table for another key is stale."""
    return dict(
        anchors=[a.default_cfg.get('architecture', type(a).__name__)
                 for a in backbone.anchors],
        depths=list(backbone.space.depths),
        widths=[a.embed_dim for a in backbone.anchors],
        mode=backbone.space.mode,
        dense=bool(backbone.out_indices),
        input_shape=list(input_shape))


def _device_of(module) -> torch.device:
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device('cpu')


def latency_protocol(input_shape: Tuple[int, int],
                     device='cpu',
                     batch_size: int = 1,
                     threads: Optional[int] = None,
                     warmup: int = LATENCY_WARMUP,
                     repeats: int = LATENCY_REPEATS) -> dict:
    """How latency is measured: the settings and the machine.

    The device defaults of :func:`flexvit_mm.analysis.benchmark.
    resolve_protocol` apply (a CPU runs one thread in float32, a GPU under
    float16 autocast) except the batch size, 1 here (latency, not
    throughput).

    Args:
        input_shape (tuple[int, int]): (H, W) of the input.
        device (str | torch.device): Where the model runs.
        batch_size (int): Images per forward. Defaults to 1.
        threads (int, optional): ``torch.set_num_threads`` for the run;
            default 1 on a CPU, unchanged on a GPU.
        warmup (int): Untimed rounds.
        repeats (int): Timed rounds; the median is reported.

    Returns:
        dict: ``device``, ``batch_size``, ``threads``, ``amp``, ``shape``,
        ``warmup``, ``repeats``, ``statistic`` and ``machine``.

    Raises:
        BenchmarkError: A device that is not there, a non-positive batch
            size or thread count, or bad warmup/repeats.
    """
    from .benchmark import BenchmarkError, machine_info, resolve_protocol
    protocol = resolve_protocol(str(device), batch_size, threads)
    if int(warmup) < 0 or int(repeats) < 1:
        raise BenchmarkError(f'Need warmup >= 0 and repeats >= 1, got '
                             f'warmup={warmup}, repeats={repeats}.')
    protocol.update(shape=[int(s) for s in input_shape], warmup=int(warmup),
                    repeats=int(repeats),
                    statistic='median ms per batch, stitches timed '
                    'round-robin',
                    machine=machine_info(protocol['device']))
    return protocol


def measure_stitch_latency(backbone,
                           input_shape: Tuple[int, int],
                           stitch_ids: Optional[Sequence[int]] = None,
                           *,
                           batch_size: int = 1,
                           threads: Optional[int] = None,
                           warmup: int = LATENCY_WARMUP,
                           repeats: int = LATENCY_REPEATS,
                           progress: bool = True) -> Dict[int, dict]:
    """Time the forward of every stitch on the backbone's device.

    The timed runs go round-robin over the stitches (A, B, C, A, B, C,
    ...: :func:`flexvit_mm.analysis.benchmark.time_interleaved`), so a slow
    phase of the machine hits every stitch alike; each stitch's median is
    reported (:func:`~flexvit_mm.analysis.benchmark.summarise`). Eval mode,
    ``torch.no_grad()``, protocol of :func:`latency_protocol`; the
    backbone's stitch, mode and the process's thread count are restored.

    Returns:
        dict[int, dict]: ``{id: dict(latency_ms=median ms per batch,
        latency_spread=(q3 - q1) / median)}``.
    """
    from .benchmark import _inputs, _num_threads, summarise, time_interleaved
    ids = list(stitch_ids) if stitch_ids is not None else list(
        backbone.stitch_ids)
    protocol = latency_protocol(input_shape, _device_of(backbone),
                                batch_size, threads, warmup, repeats)
    previous, was_training = backbone.stitch_id, backbone.training
    backbone.eval()

    def runner(stitch_id, inputs):
        def forward():
            backbone.set_stitch(stitch_id)
            autocast = torch.autocast('cuda', dtype=torch.float16) \
                if protocol['amp'] else contextlib.nullcontext()
            with torch.no_grad(), autocast:
                return backbone(inputs)
        return forward

    try:
        with _num_threads(protocol['threads']):
            inputs = _inputs(protocol['batch_size'], tuple(input_shape),
                             protocol, False)
            times, _ = time_interleaved(
                {i: runner(i, inputs) for i in ids}, protocol['warmup'],
                protocol['repeats'], protocol['device'], progress)
    finally:
        backbone.set_stitch(previous)
        backbone.train(was_training)
    table = {}
    for stitch_id in ids:
        summary = summarise(times[stitch_id], protocol['batch_size'])
        table[stitch_id] = dict(latency_ms=summary['median_s'] * 1e3,
                                latency_spread=summary['spread'])
    return table


def compute_stitch_table(backbone,
                         input_shape: Tuple[int, int],
                         stitch_ids: Optional[Sequence[int]] = None,
                         *,
                         latency: bool = False,
                         batch_size: int = 1,
                         threads: Optional[int] = None,
                         warmup: int = LATENCY_WARMUP,
                         repeats: int = LATENCY_REPEATS,
                         progress: bool = True) -> Dict[int, dict]:
    """Count every stitch's multiply-accumulates (fvcore's "FLOPs",
    attention included) on one ``1 x 3 x H x W`` input and its parameters;
    optionally measure its latency.

    Args:
        backbone (SNNetv2): The stitched backbone.
        input_shape (tuple[int, int]): (H, W) of the input.
        stitch_ids (Sequence[int], optional): Defaults to every stitch.
        latency (bool): Also time each stitch
            (:func:`measure_stitch_latency`) on the backbone's device with
            ``batch_size``, ``threads``, ``warmup`` and ``repeats``; the
            protocol is what :func:`latency_protocol` returns for them.
            Defaults to False.
        progress (bool): Show mmengine progress bars. Defaults to True.

    Returns:
        dict[int, dict]: ``{id: dict(flops=int, params=int)}``; with
        ``latency`` also ``latency_ms`` (median ms per batch) and
        ``latency_spread``. The FLOPs are per image (batch 1) whatever the
        latency batch size.
    """
    from mmengine.utils import ProgressBar
    ids = list(stitch_ids) if stitch_ids is not None else list(
        backbone.stitch_ids)
    if hasattr(backbone, 'check_input_shape'):
        backbone.check_input_shape(input_shape)  # a clear ValueError
    if latency:  # a bad protocol fails before the FLOPs are counted
        latency_protocol(input_shape, _device_of(backbone), batch_size,
                         threads, warmup, repeats)
    previous, was_training = backbone.stitch_id, backbone.training
    inputs = torch.zeros(1, 3, *input_shape, device=_device_of(backbone))
    table = {}
    backbone.eval()
    # sys.stdout looked up now (ProgressBar's default is bound at import),
    # so captured or redirected output gets the bar.
    bar = ProgressBar(len(ids), file=sys.stdout) if progress and ids \
        else None
    try:
        for stitch_id in ids:
            backbone.set_stitch(stitch_id)
            table[stitch_id] = dict(
                flops=int(count_flops(backbone, inputs)),
                params=int(backbone.stitch_params(stitch_id)))
            if bar is not None:
                bar.update()
    finally:
        backbone.set_stitch(previous)
        backbone.train(was_training)
    if bar is not None:
        bar.file.write('\n')
        bar.file.flush()
    if latency:
        times = measure_stitch_latency(
            backbone, input_shape, ids, batch_size=batch_size,
            threads=threads, warmup=warmup, repeats=repeats,
            progress=progress)
        for stitch_id in ids:
            table[stitch_id].update(times[stitch_id])
    return table


def load_or_compute_stitch_table(backbone, input_shape: Tuple[int, int],
                                 cache_file: Optional[str] = None
                                 ) -> Dict[int, dict]:
    """:func:`compute_stitch_table`, cached in ``cache_file`` (JSON) and
    recomputed when the anchors, mode or input size changed."""
    key = stitch_table_key(backbone, input_shape)
    if cache_file and osp.isfile(cache_file):
        with open(cache_file) as f:
            cached = json.load(f)
        if cached.get('key') == key:
            return {int(k): v for k, v in cached['table'].items()}
    table = compute_stitch_table(backbone, input_shape)
    if cache_file:
        os.makedirs(osp.dirname(osp.abspath(cache_file)), exist_ok=True)
        tmp = cache_file + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(dict(key=key, table=table), f, indent=1)
        os.replace(tmp, cache_file)
    return table
