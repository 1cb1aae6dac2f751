"""FLOPs counting that includes the attention core, for per-stitch tables.

SN-Netv2 reports the cost of every stitch as fvcore's
``FlopCountAnalysis(model, x).total()``: multiply-accumulates (MACs), which
the paper and the code call "GFLOPs". Its DeiT-III models compute attention
with explicit matmuls, so fvcore counts ``q @ k^T`` and ``attn @ v``. timm's
ViTs (and many newer models) call ``F.scaled_dot_product_attention``
instead, which traces to ``aten::scaled_dot_product_attention``; neither
fvcore nor mmengine's port (:class:`mmengine.analysis.FlopAnalyzer`) has a
handle for it, so the attention core silently drops out of the total
(DeiT3-S: 4.25 G instead of 4.61 G). :func:`sdpa_flop_jit` is that missing
handle, and :func:`count_flops` registers it, which reproduces the official
numbers whatever attention path a model takes.

Counting convention (fvcore's, kept on purpose so tables stay comparable
with the papers):

* one multiply-accumulate is one "FLOP";
* linear layers, convolutions, matmuls, einsum, normalisation layers,
  upsampling, adaptive average pooling and grid sampling are counted;
* element-wise ops such as ``add``, ``mul``, ``softmax`` and ``gelu`` are
  deliberately not counted [#elementwise]_, nor are the scale, mask and
  softmax inside ``scaled_dot_product_attention``.

.. [#elementwise] fvcore leaves them out because they are memory-bound and
   small next to the matmuls; counting them here would shift every entry of
   a FLOPs table away from the published values.
"""
import contextlib
import sys
from typing import (Any, Callable, Dict, Hashable, Iterable, List, Optional,
                    Sequence, Tuple, Union)

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape
from mmengine.utils import ProgressBar
from torch import nn

__all__ = [
    'SDPA_OP', 'sdpa_flop_jit', 'count_flops', 'count_flops_per_setting',
    'explicit_attention'
]

# The op that ``F.scaled_dot_product_attention`` leaves in a jit trace. The
# fused kernels (flash, memory-efficient, ...) are chosen below it at
# dispatch time, so a trace never shows them and one handle covers all.
SDPA_OP = 'aten::scaled_dot_product_attention'

Inputs = Union[torch.Tensor, Tuple[torch.Tensor, ...]]


def _prod(values: Sequence[int]) -> int:
    """Multiply integers in exact Python arithmetic.

    Args:
        values (Sequence[int]): The factors; empty gives 1.

    Returns:
        int: The product.
    """
    result = 1
    for value in values:
        result *= int(value)
    return result


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Count the MACs of ``aten::scaled_dot_product_attention``.

    An fvcore/mmengine op handle: it reads the traced shapes of
    ``query [..., Lq, d]``, ``key [..., Lk, d]`` and ``value [..., Lk, dv]``
    and counts the two matmuls the op stands for, exactly as the explicit
    ``q @ k.transpose(-2, -1)`` and ``attn @ v`` would be counted by
    ``matmul_flop_jit``::

        prod(batch dims) * (Lq * Lk * d + Lq * Lk * dv)

    The batch dims (``B, H`` for multi-head attention) are taken from the
    output, which carries the broadcast of ``query``, ``key`` and ``value``
    batch dims and the query head count under grouped-query attention. A
    causal mask or ``attn_mask`` does not reduce the count, as the explicit
    masked matmuls would not either.

    Args:
        inputs (list[torch._C.Value]): The op's traced inputs: ``query``,
            ``key``, ``value``, then the mask and scalar options.
        outputs (list[torch._C.Value]): The op's traced outputs; the first
            is the attention result ``[..., Lq, dv]``.

    Returns:
        int: Multiply-accumulates of the attention core.

    Raises:
        ValueError: If the trace did not record the shapes of query, key and
            value.
    """
    q_shape, k_shape, v_shape = (get_shape(v) for v in inputs[:3])
    if q_shape is None or k_shape is None or v_shape is None:
        raise ValueError(f'{SDPA_OP}: the trace lacks the shapes of query, '
                         'key or value; cannot count its FLOPs.')
    len_q, dim_qk = q_shape[-2], q_shape[-1]
    len_k, dim_v = v_shape[-2], v_shape[-1]
    if k_shape[-1] != dim_qk or k_shape[-2] != len_k:
        raise ValueError(f'{SDPA_OP}: inconsistent shapes query={q_shape}, '
                         f'key={k_shape}, value={v_shape}.')
    out_shape = get_shape(outputs[0]) if outputs else None
    # The output's batch dims are the number of attention problems actually
    # solved; the query's are the fallback for a trace without them.
    batch_dims = out_shape[:-2] if out_shape is not None else q_shape[:-2]
    batch = _prod(batch_dims)
    return batch * len_q * len_k * (dim_qk + dim_v)


@contextlib.contextmanager
def explicit_attention(model: nn.Module):
    """Temporarily make timm attention modules use explicit matmuls.

    timm's attention modules choose between
    ``F.scaled_dot_product_attention`` and ``q @ k^T, softmax, attn @ v``
    through their ``fused_attn`` attribute. The explicit path is what the
    DeiT-III reference code runs, so this is the fallback for a tracer that
    cannot handle the fused op, and a cross-check for :func:`sdpa_flop_jit`.

    Args:
        model (nn.Module): The model whose submodules with a boolean
            ``fused_attn`` attribute are switched.

    Yields:
        nn.Module: ``model`` itself, with ``fused_attn = False`` everywhere
        until the context exits, when the old values come back.
    """
    saved = []
    for module in model.modules():
        # Only timm-style boolean flags: anything else named like that is
        # not ours to reinterpret.
        if isinstance(getattr(module, 'fused_attn', None), bool):
            saved.append((module, module.fused_attn))
            module.fused_attn = False
    try:
        yield model
    finally:
        for module, value in saved:
            module.fused_attn = value


def _as_trace_inputs(inputs: Union[Inputs, List[torch.Tensor]]) -> Inputs:
    """Normalise ``inputs`` to what ``torch.jit`` tracing accepts.

    Args:
        inputs (Tensor | tuple[Tensor] | list[Tensor]): Positional inputs of
            ``model.forward``.

    Returns:
        Tensor | tuple[Tensor]: The tensor, or the inputs as a tuple (the
        tracer unpacks tuples into positional arguments, not lists).
    """
    if isinstance(inputs, list):
        return tuple(inputs)
    return inputs


def _analyze(model: nn.Module, inputs: Inputs,
             show_unsupported: bool) -> Tuple[int, set]:
    """Trace ``model`` once and return its MACs and its uncalled modules.

    Args:
        model (nn.Module): The model to trace.
        inputs (Tensor | tuple[Tensor]): Positional inputs of its forward.
        show_unsupported (bool): Whether to log the ops without a handle.

    Returns:
        tuple[int, set[str]]: Total MACs, and the canonical names of the
        submodules that the trace never entered.
    """
    was_training = model.training
    # Eval mode: dropout and drop-path must not change the traced graph, and
    # batch norm must be counted in its inference form.
    model.eval()
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(model, _as_trace_inputs(inputs))
            analyzer.set_op_handle(**{SDPA_OP: sdpa_flop_jit})
            analyzer.unsupported_ops_warnings(show_unsupported)
            # A stitched model leaves most of its stitching layers unused on
            # purpose; the per-setting parameter count reports that instead.
            analyzer.uncalled_modules_warnings(False)
            total = int(analyzer.total())
            uncalled = set(analyzer.uncalled_modules())
    finally:
        model.train(was_training)
    return total, uncalled


def count_flops(model: nn.Module,
                inputs: Inputs,
                *,
                show_unsupported: bool = False) -> int:
    """Count the multiply-accumulates of one forward pass, attention included.

    Traces ``model(*inputs)`` with :class:`mmengine.analysis.FlopAnalyzer`
    plus :func:`sdpa_flop_jit`, in eval mode and under ``torch.no_grad()``;
    the model's train/eval mode is restored afterwards. The result is what
    SN-Netv2 (fvcore) reports as FLOPs, e.g. ``4.61e9`` for DeiT3-S at
    224x224 [#uncounted]_.

    Args:
        model (nn.Module): The model to analyse.
        inputs (Tensor | tuple[Tensor]): Positional inputs of
            ``model.forward``; include the batch dimension (1 for the
            usual per-image numbers).
        show_unsupported (bool): Log the ops that have no handle (and so add
            nothing). Off by default because the element-wise ops are left
            out on purpose. Defaults to False.

    Returns:
        int: Total MACs of the forward pass.

    .. [#uncounted] Element-wise ops (``add``, ``mul``, ``softmax``,
       ``gelu``, ...) are not counted, as in fvcore and the published
       tables; see the module docstring.
    """
    total, _ = _analyze(model, inputs, show_unsupported)
    return total


def _used_params(model: nn.Module, uncalled: Iterable[str]) -> int:
    """Count the parameters a traced forward pass could have used.

    A parameter is unused when it belongs directly (``recurse=False``) to a
    module the trace never entered and that is not an ancestor of an entered
    one. Each parameter tensor counts once, however many modules share it,
    and a parameter tied to an entered module is never subtracted.

    Args:
        model (nn.Module): The traced model.
        uncalled (Iterable[str]): Canonical names of the submodules the
            trace never entered (:meth:`FlopAnalyzer.uncalled_modules`).

    Returns:
        int: Number of parameter elements that remain.
    """
    uncalled = set(uncalled)
    # named_modules() yields each module once under its first name, which is
    # the canonical name the analyzer reports.
    modules = dict(model.named_modules())
    called = [name for name in modules if name not in uncalled]

    def is_ancestor_of_called(name: str) -> bool:
        # A container whose own forward was bypassed still owns what its
        # called children need; keep its direct parameters.
        prefix = name + '.'
        return any(other.startswith(prefix) for other in called)

    kept = {
        id(p)
        for name in called
        for p in modules[name].parameters(recurse=False)
    }
    dropped = {}
    for name in uncalled:
        module = modules.get(name)
        if module is None or is_ancestor_of_called(name):
            continue
        for param in module.parameters(recurse=False):
            if id(param) not in kept:
                dropped[id(param)] = param.numel()
    # parameters() already deduplicates shared tensors.
    total = sum(p.numel() for p in model.parameters())
    return total - sum(dropped.values())


def count_flops_per_setting(
        model: nn.Module,
        inputs: Inputs,
        settings: Iterable[Hashable],
        apply: Callable[[nn.Module, Hashable], Any],
        *,
        show_unsupported: bool = False,
        progress: bool = True) -> Dict[Hashable, Dict[str, int]]:
    """Count MACs and used parameters for every setting of a dynamic model.

    For each setting (for a stitched network, a stitch id) this calls
    ``apply(model, setting)`` and then traces one forward pass as
    :func:`count_flops` does. The same trace yields the parameters the
    setting uses: all parameters minus those of the modules it never
    entered (for example the stitching layers of other stitches).

    Args:
        model (nn.Module): The dynamic model.
        inputs (Tensor | tuple[Tensor]): Positional inputs of its forward.
        settings (Iterable[Hashable]): The settings to measure, in order;
            used as the keys of the result.
        apply (Callable[[nn.Module, Hashable], Any]): Puts ``model`` into a
            setting; its return value is ignored. The model is left in the
            last setting.
        show_unsupported (bool): Log the ops without a handle for each
            trace. Defaults to False.
        progress (bool): Show an mmengine progress bar; a table over the
            134 stitches of an S-L pair takes minutes. Defaults to True.

    Returns:
        dict[Hashable, dict[str, int]]: ``{setting: dict(flops=MACs,
        params=used parameter elements)}``.

    Raises:
        ValueError: If a setting occurs twice, which would silently
            overwrite its entry.
    """
    settings = list(settings)
    if len(set(settings)) != len(settings):
        raise ValueError('count_flops_per_setting: settings must be unique.')
    # sys.stdout is looked up now, not at import as ProgressBar's default
    # is, so redirected or captured output gets the bar.
    bar: Optional[ProgressBar] = (ProgressBar(len(settings), file=sys.stdout)
                                  if progress and settings else None)
    results = {}
    for setting in settings:
        apply(model, setting)
        flops, uncalled = _analyze(model, inputs, show_unsupported)
        results[setting] = dict(flops=flops,
                                params=_used_params(model, uncalled))
        if bar is not None:
            bar.update()
    if bar is not None:
        # ProgressBar leaves the cursor on its line; end it so later output
        # starts cleanly.
        bar.file.write('\n')
        bar.file.flush()
    return results
