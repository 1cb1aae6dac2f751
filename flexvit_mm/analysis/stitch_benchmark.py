"""How fast stitches run: routing overhead and shared-prefix sweeps.

Two measurements for a stitched backbone (:class:`SNNetv2`):

* :func:`compare_with_plain` times every requested stitch against the same
  computation written as a plain ``nn.Sequential`` of the same timm blocks
  and ``nn.Linear`` layers (the zero-overhead limit), and optionally against
  the official implementation, interleaved round-robin in one process;
* :func:`measure_shared_prefix_sweep` times evaluating many stitches on one
  batch one by one against :meth:`SNNetv2.sharing_prefixes`, checks that
  both give identical outputs, and sets the measured saving next to the one
  :func:`predict_shared_prefix_saving` derives from the route tree.
"""
import statistics
import sys
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .benchmark import (BenchmarkError, _num_threads, _progress, _sync,
                        machine_info, resolve_protocol, time_interleaved)
from ..models.backbones.anchors import embed_tokens
from .complexity import count_flops

__all__ = [
    'plain_equivalent', 'compare_with_plain', 'step_flops',
    'predict_shared_prefix_saving', 'measure_shared_prefix_sweep',
    'format_plain_table', 'format_sweep_table'
]


# --------------------------------------------------------------------------
# the plain equivalent of one stitch


class _Embedding(nn.Module):
    """An anchor's patch embedding, position embedding and pre-norm."""

    def __init__(self, anchor):
        super().__init__()
        self.anchor = anchor

    def forward(self, x):
        return embed_tokens(self.anchor, x)


class _Head(nn.Module):
    """An anchor's final norm and classifier head."""

    def __init__(self, anchor):
        super().__init__()
        self.anchor = anchor

    def forward(self, x):
        return self.anchor.forward_head(self.anchor.norm(x))


def _merged_linear(layer) -> nn.Linear:
    linear = nn.Linear(layer.in_features, layer.out_features)
    with torch.no_grad():
        linear.weight.copy_(layer.merged_weight())
        linear.bias.copy_(layer.bias)
    return linear


def plain_equivalent(backbone, stitch_id: int) -> nn.Sequential:
    """One classification stitch as ``nn.Sequential(embedding, blocks...,
    nn.Linear, blocks..., norm + head)``: the same timm block objects, the
    stitching layers as plain linear layers with their LoRA update merged.
    It computes what ``backbone`` computes for that stitch with no routing
    at all.

    Raises:
        BenchmarkError: For a dense backbone (several outputs have no
            sequential form; time its classification sibling instead).
    """
    if backbone.dense:
        raise BenchmarkError(
            'The plain-network comparison needs a classification SNNetv2 '
            '(one output); this backbone returns dense features. Time the '
            'classification config of the same anchors instead, e.g. '
            'configs/cls/snnetv2_deit3-s-l_in1k.py: the routing code is the '
            'same.')
    route = backbone.space[stitch_id]
    modules = [_Embedding(backbone.anchors[route.first_anchor])]
    layers = list(route.layers) + [None]
    for segment, layer in zip(route.segments, layers):
        blocks = backbone.anchors[segment.anchor].blocks
        modules.extend(blocks[segment.first:segment.last + 1])
        if layer is not None:
            modules.append(
                _merged_linear(backbone.stitch_layers[layer[0]][layer[1]]))
    modules.append(_Head(backbone.anchors[route.last_anchor]))
    return nn.Sequential(*modules).eval()


# --------------------------------------------------------------------------
# routing overhead


def _median_ratio(numerator, denominator):
    return statistics.median(numerator) / statistics.median(denominator)


def compare_with_plain(backbone,
                       stitch_ids: Optional[Sequence[int]] = None,
                       shape: Tuple[int, int] = (224, 224),
                       device: str = 'cpu',
                       batch_size: Optional[int] = None,
                       threads: Optional[int] = None,
                       warmup: int = 1,
                       repeats: int = 5,
                       official: Optional[Callable[[int], Callable]] = None,
                       progress: bool = False) -> dict:
    """Time every stitch against its plain ``nn.Sequential`` equivalent.

    For each stitch the runners (ours, plain and, if given, official) run
    interleaved round-robin on the same input: ``warmup`` untimed rounds,
    then ``repeats`` timed ones; the ratio is of medians. The outputs of
    ours and plain are compared before timing.

    Args:
        backbone (SNNetv2): A classification stitched backbone.
        stitch_ids (Sequence[int], optional): Defaults to every stitch.
        shape (tuple[int, int]): Input (H, W). Defaults to (224, 224).
        device, batch_size, threads: See :func:`resolve_protocol` (CPU
            defaults: batch 16, one thread).
        warmup (int): Untimed rounds per stitch. Defaults to 1.
        repeats (int): Timed rounds per stitch. Defaults to 5.
        official (callable, optional): ``stitch_id -> callable(x)`` running
            the official model at that stitch.
        progress (bool): Show a progress bar.

    Returns:
        dict: ``protocol``, ``summary`` and ``stitches``: ``{id: dict(
        route, ours_ms, plain_ms, ratio, paired_ratio, [official_ms,
        official_ratio], max_abs_diff)}`` (ms per batch, medians; ratio =
        ours / plain of the medians; paired_ratio = the median over rounds
        of ours / plain within a round, which cancels load changes between
        rounds).
    """
    protocol = resolve_protocol(device, batch_size, threads, None)
    protocol.update(shape=list(shape), warmup=warmup, repeats=repeats,
                    machine=machine_info(protocol['device']))
    ids = list(backbone.stitch_ids if stitch_ids is None else stitch_ids)
    backbone = backbone.to(protocol['device']).eval()
    previous = backbone.stitch_id
    results = {}
    bar = _progress(len(ids), progress)
    with _num_threads(protocol['threads']), torch.no_grad():
        x = torch.randn(protocol['batch_size'], 3, *shape,
                        generator=torch.Generator().manual_seed(0)).to(
                            protocol['device'])
        try:
            for stitch_id in ids:
                backbone.set_stitch(stitch_id)
                plain = plain_equivalent(backbone, stitch_id)
                ours_out = backbone(x)[0]
                plain_out = plain(x)
                diff = (ours_out - plain_out).abs().max().item()
                runners = dict(ours=lambda: backbone(x),
                               plain=lambda: plain(x))
                if official is not None:
                    run_official = official(stitch_id)
                    runners['official'] = lambda: run_official(x)
                times, _ = time_interleaved(runners, warmup, repeats,
                                            protocol['device'])
                row = dict(route=backbone.space[stitch_id].name,
                           ours_ms=statistics.median(times['ours']) * 1e3,
                           plain_ms=statistics.median(times['plain']) * 1e3,
                           ratio=_median_ratio(times['ours'],
                                               times['plain']),
                           paired_ratio=statistics.median(
                               a / b for a, b in zip(times['ours'],
                                                     times['plain'])),
                           max_abs_diff=diff)
                if official is not None:
                    row['official_ms'] = statistics.median(
                        times['official']) * 1e3
                    row['official_ratio'] = _median_ratio(
                        times['official'], times['plain'])
                results[stitch_id] = row
                if bar is not None:
                    bar.update()
        finally:
            backbone.set_stitch(previous)
    ratios = [r['ratio'] for r in results.values()]
    summary = dict(max_ratio=max(ratios), median_ratio=statistics.median(
        ratios), over_1_05=[i for i, r in results.items()
                            if r['ratio'] > 1.05])
    return dict(protocol=protocol, stitches=results, summary=summary)


# --------------------------------------------------------------------------
# shared prefixes


def step_flops(backbone, input_shape: Tuple[int, int]) -> Tuple[Callable,
                                                                Callable]:
    """FLOPs of each step of :meth:`SNNetv2.route_steps` at an input size,
    and of each stitch's tail (the classifier's norm and head; nothing for
    dense outputs, whose reshaping costs no FLOPs).

    Counted with :func:`count_flops` per module on a one-image input, so a
    route's steps plus its tail add up to its entry of the stitch table.

    Returns:
        tuple: ``(cost(step) -> int, tail(stitch_id) -> int)``.
    """
    device = next(backbone.parameters()).device
    image = torch.zeros(1, 3, *input_shape, device=device)
    was_training = backbone.training
    backbone.eval()
    cache: Dict[tuple, int] = {}
    tokens = {}
    with torch.no_grad():
        for anchor_index, anchor in enumerate(backbone.anchors):
            embedding = _Embedding(anchor)
            cache[('embed', anchor_index)] = int(count_flops(embedding, image))
            tokens[anchor_index] = embedding(image)

    def cost(step) -> int:
        kind = step[0]
        if kind == 'embed':
            return cache[step]
        if kind == 'layer':
            key = step
            if key not in cache:
                cache[key] = int(count_flops(
                    backbone.stitch_layers[step[1]][step[2]],
                    tokens[step[1]]))
            return cache[key]
        _, anchor, block, emitted = step
        key = ('block', anchor, block)
        if key not in cache:
            cache[key] = int(count_flops(backbone.anchors[anchor].blocks[block],
                                         tokens[anchor]))
        total = cache[key]
        if emitted and anchor == 0:  # small features projected to L width
            total += cost(('layer', 0, block))
        return total

    def tail(stitch_id) -> int:
        if backbone.dense:
            return 0
        last = backbone.space[stitch_id].last_anchor
        key = ('tail', last)
        if key not in cache:
            cache[key] = int(count_flops(_Head(backbone.anchors[last]),
                                         tokens[last]))
        return cache[key]

    backbone.train(was_training)
    return cost, tail


def predict_shared_prefix_saving(backbone,
                                 input_shape: Tuple[int, int],
                                 stitch_ids: Optional[Sequence[int]] = None
                                 ) -> dict:
    """The saving of a shared-prefix sweep, from the route tree.

    Sum over stitches of their FLOPs (each stitch alone) against the FLOPs
    of the union of their prefixes plus every stitch's own tail.

    Returns:
        dict: ``stitches``, ``sum_gflops``, ``union_gflops``,
        ``saving`` (1 - union / sum), ``speedup`` (sum / union), ``steps``
        (all routes' steps) and ``distinct_steps`` (tree nodes).
    """
    from ..models.stitching.prefix_tree import PrefixTree
    ids = list(backbone.stitch_ids if stitch_ids is None else stitch_ids)
    tree = PrefixTree({i: backbone.route_steps(i) for i in ids})
    cost, tail = step_flops(backbone, input_shape)
    tails = sum(tail(i) for i in ids)
    total = tree.total_cost(cost) + tails
    union = tree.union_cost(cost) + tails
    return dict(stitches=len(ids), input_shape=list(input_shape),
                sum_gflops=total / 1e9, union_gflops=union / 1e9,
                saving=1 - union / total, speedup=total / union,
                steps=sum(len(p) for p in tree.paths.values()),
                distinct_steps=tree.num_nodes)


def _outputs_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return (isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(_outputs_equal(x, y) for x, y in zip(a, b)))
    return a == b


def measure_shared_prefix_sweep(backbone,
                                stitch_ids: Optional[Sequence[int]] = None,
                                shape: Tuple[int, int] = (224, 224),
                                device: str = 'cpu',
                                batch_size: Optional[int] = None,
                                threads: Optional[int] = None,
                                repeats: int = 1,
                                progress: bool = False) -> dict:
    """Evaluate stitches on one batch one by one and with shared prefixes.

    The two sweeps alternate ``repeats`` times (per-stitch first) after one
    untimed forward; every output of the shared sweep must equal the
    per-stitch one exactly (``torch.equal``), else this raises.

    Returns:
        dict: ``protocol``, ``per_stitch_s`` and ``shared_s`` (medians of
        whole sweeps), ``measured_speedup``, ``measured_saving``,
        ``identical`` (True), the reuse counts and :func:
        `predict_shared_prefix_saving`'s ``predicted`` entry.
    """
    protocol = resolve_protocol(device, batch_size, threads, None)
    protocol.update(shape=list(shape), repeats=repeats,
                    machine=machine_info(protocol['device']))
    ids = list(backbone.stitch_ids if stitch_ids is None else stitch_ids)
    predicted = predict_shared_prefix_saving(backbone, tuple(shape), ids)
    backbone = backbone.to(protocol['device']).eval()
    previous = backbone.stitch_id
    times = dict(per_stitch=[], shared=[])
    reused = run = 0
    bar = _progress(2 * repeats * len(ids), progress)
    with _num_threads(protocol['threads']), torch.no_grad():
        x = torch.randn(protocol['batch_size'], 3, *shape,
                        generator=torch.Generator().manual_seed(0)).to(
                            protocol['device'])
        try:
            backbone(x)  # one untimed forward (allocator, lazy init)
            for _ in range(repeats):
                reference = {}
                _sync(protocol['device'])
                start = time.perf_counter()
                for stitch_id in ids:
                    backbone.set_stitch(stitch_id)
                    reference[stitch_id] = backbone(x)
                    if bar is not None:
                        bar.update()
                _sync(protocol['device'])
                times['per_stitch'].append(time.perf_counter() - start)
                shared = {}
                _sync(protocol['device'])
                start = time.perf_counter()
                with backbone.sharing_prefixes(ids) as cache:
                    for stitch_id in cache.order:
                        backbone.set_stitch(stitch_id)
                        shared[stitch_id] = backbone(x)
                        if bar is not None:
                            bar.update()
                    _sync(protocol['device'])
                times['shared'].append(time.perf_counter() - start)
                reused, run = cache.steps_reused, cache.steps_run
                different = [i for i in ids
                             if not _outputs_equal(shared[i], reference[i])]
                if different:
                    raise AssertionError(
                        f'Shared-prefix outputs differ from per-stitch ones '
                        f'for stitches {different}.')
                del reference, shared
        finally:
            backbone.set_stitch(previous)
    if bar is not None:
        sys.stderr.write('\n')
    per_stitch = statistics.median(times['per_stitch'])
    shared_s = statistics.median(times['shared'])
    return dict(protocol=protocol, stitches=len(ids),
                per_stitch_s=per_stitch, shared_s=shared_s,
                measured_speedup=per_stitch / shared_s,
                measured_saving=1 - shared_s / per_stitch,
                identical=True, steps_reused=reused, steps_run=run,
                predicted=predicted, times_s=times)


# --------------------------------------------------------------------------
# reporting


def format_plain_table(result, official=False) -> str:
    """A Markdown table of :func:`compare_with_plain`'s result."""
    head = ['id', 'route', 'ours ms', 'plain ms', 'ours/plain', 'paired']
    if official:
        head += ['official ms', 'official/plain']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for stitch_id, row in result['stitches'].items():
        cells = [str(stitch_id), row['route'], f'{row["ours_ms"]:.1f}',
                 f'{row["plain_ms"]:.1f}', f'{row["ratio"]:.3f}',
                 f'{row["paired_ratio"]:.3f}']
        if official:
            cells += [f'{row.get("official_ms", float("nan")):.1f}',
                      f'{row.get("official_ratio", float("nan")):.3f}']
        lines.append('| ' + ' | '.join(cells) + ' |')
    summary = result['summary']
    lines.append('')
    lines.append(f'ours/plain: median {summary["median_ratio"]:.3f}, max '
                 f'{summary["max_ratio"]:.3f}; stitches above 1.05: '
                 f'{summary["over_1_05"] or "none"}')
    return '\n'.join(lines)


def format_sweep_table(result) -> str:
    """A Markdown table of :func:`measure_shared_prefix_sweep`'s result."""
    p = result['predicted']
    lines = [
        '| stitches | per-stitch sweep | shared-prefix sweep | measured '
        'speedup | predicted speedup (FLOPs) | sum GFLOPs/img | union '
        'GFLOPs/img | '
        'identical |', '|---|---|---|---|---|---|---|---|',
        f'| {result["stitches"]} | {result["per_stitch_s"]:.2f} s | '
        f'{result["shared_s"]:.2f} s | {result["measured_speedup"]:.2f}x | '
        f'{p["speedup"]:.2f}x | {p["sum_gflops"]:.1f} | '
        f'{p["union_gflops"]:.1f} | {result["identical"]} |'
    ]
    return '\n'.join(lines)
