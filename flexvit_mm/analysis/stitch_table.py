"""The per-stitch complexity table: GFLOPs and parameters of every stitch.

One function computes it, for the FLOPs-grouped sampler, the test sweep
report and the analysis tools alike.
"""
import json
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import torch

from .complexity import count_flops


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


def compute_stitch_table(backbone,
                         input_shape: Tuple[int, int],
                         stitch_ids: Optional[Sequence[int]] = None
                         ) -> Dict[int, dict]:
    """Count every stitch's multiply-accumulates (fvcore's "FLOPs",
    attention included) on one ``1 x 3 x H x W`` input, and its parameters.

    Args:
        backbone (SNNetv2): The stitched backbone.
        input_shape (tuple[int, int]): (H, W) of the input.
        stitch_ids (Sequence[int], optional): Defaults to every stitch.

    Returns:
        dict[int, dict]: ``{id: dict(flops=int, params=int)}``.
    """
    from mmengine.utils import ProgressBar
    ids = list(stitch_ids) if stitch_ids is not None else list(
        backbone.stitch_ids)
    previous, was_training = backbone.stitch_id, backbone.training
    inputs = torch.zeros(1, 3, *input_shape,
                         device=next(backbone.parameters()).device)
    table = {}
    backbone.eval()
    bar = ProgressBar(len(ids))
    try:
        for stitch_id in ids:
            backbone.set_stitch(stitch_id)
            table[stitch_id] = dict(
                flops=int(count_flops(backbone, inputs)),
                params=int(backbone.stitch_params(stitch_id)))
            bar.update()
    finally:
        backbone.set_stitch(previous)
        backbone.train(was_training)
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
