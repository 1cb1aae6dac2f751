"""One stitch of an SN-Netv2 backbone as a standalone ``ChainedViT``.

:func:`export_stitch` turns the route of one stitch id into the config and
the weights of a :class:`~flexvit_mm.models.backbones.chained_vit.ChainedViT`
that computes the same function and holds only what the stitch uses:

- one segment per route segment, a timm ViT rebuilt with the anchor's own
  arguments and ``depth`` = the segment's block count, holding copies of the
  blocks it runs (their stochastic-depth rates kept per block);
- the first anchor's patch/position embeddings and class token;
- classification: the last anchor's final norm and head;
- the stitching layers of the route's cuts as plain linear bridges, with
  their low-rank update merged into the weight (``W0 + B·A / r``);
- dense outputs: the S->L stitching layers that project small-anchor
  features to the large width (merged likewise); a projection that is the
  very layer of the cut after that block is the bridge, not a copy.
"""
from typing import Dict, List, Tuple

import torch

from ..backbones.chained_vit import ChainedViT, block_drop_path
from .space import SMALL

__all__ = ['export_stitch', 'build_exported', 'lora_keys']


def _segment_cfgs(backbone, route) -> List[dict]:
    cfgs = []
    for seg in route.segments:
        cfg = dict(backbone.anchor_cfgs[seg.anchor])
        blocks = backbone.anchors[seg.anchor].blocks[seg.first:seg.last + 1]
        # timm's `depth` argument sets how many blocks are built; the rates
        # keep each block's place in the original schedule (a linear ramp
        # rebuilt over fewer blocks would give other values).
        cfg['depth'] = seg.last - seg.first + 1
        # Rounded: timm computes the rates in float32 (0.04 -> 0.0399999991).
        cfg['drop_path_rates'] = [
            round(block_drop_path(b), 7) for b in blocks
        ]
        cfgs.append(cfg)
    return cfgs


def _outputs(backbone, route) -> Tuple[List[int], List, bool]:
    """Chain out indices, their projections, and whether any is 'linear'."""
    offsets, total = [], 0
    for seg in route.segments:
        offsets.append(total)
        total += seg.last - seg.first + 1
    indices, projections = [], []
    for segment_index, anchor, block in backbone._feature_plan(route):
        seg = route.segments[segment_index]
        chain = offsets[segment_index] + block - seg.first
        indices.append(chain)
        if anchor != SMALL:
            projections.append(None)
        elif (block == seg.last and segment_index < len(route.layers)
              and tuple(route.layers[segment_index]) == (SMALL, block)):
            projections.append('bridge')
        else:
            projections.append('linear')
    return indices, projections, 'linear' in projections


StateDict = Dict[str, torch.Tensor]


def export_stitch(backbone, stitch_id: int) -> Tuple[dict, StateDict]:
    """The standalone form of one stitch.

    Args:
        backbone (SNNetv2): The stitched backbone, with its weights loaded.
        stitch_id (int): One of ``backbone.stitch_ids``.

    Returns:
        tuple[dict, dict]: the backbone config (``type='ChainedViT'``,
        plain Python values, ready for a config file) and its state dict
        (new tensors; ``backbone`` is left unchanged). Built from the config
        and loaded with the state dict (``strict=True``), the ChainedViT
        computes what ``backbone`` computes for ``stitch_id`` in eval mode.

    Raises:
        ValueError: ``stitch_id`` is not a stitch of ``backbone``.
    """
    route = backbone.space[backbone.space.check_id(stitch_id)]
    cfg = dict(type='ChainedViT', segments=_segment_cfgs(backbone, route))
    widths = [a.embed_dim for a in backbone.anchors]
    if backbone.dense:
        indices, projections, linear = _outputs(backbone, route)
        cfg['out_indices'] = indices
        if any(p is not None for p in projections):
            cfg['out_projections'] = projections
        if linear:
            cfg['out_channels'] = widths[1 - SMALL]
        cfg['output_cls_token'] = bool(backbone.output_cls_token)
    state = _exported_state(backbone, route, cfg)
    return cfg, state


def _exported_state(backbone, route, cfg) -> StateDict:
    """Every key of the ChainedViT built from ``cfg``, from ``backbone``."""
    with torch.device('meta'):
        # Only the key names and shapes are needed here.
        target = ChainedViT(**{k: v for k, v in cfg.items() if k != 'type'})
    sources = [anchor.state_dict(keep_vars=True)
               for anchor in backbone.anchors]
    state = {}
    with torch.no_grad():
        for key, value in target.state_dict().items():
            head, _, rest = key.partition('.')
            if head == 'segments':
                index, _, rest = rest.partition('.')
                seg = route.segments[int(index)]
                if rest.startswith('blocks.'):
                    block, _, tail = rest[len('blocks.'):].partition('.')
                    rest = f'blocks.{seg.first + int(block)}.{tail}'
                source = sources[seg.anchor][rest]
            elif head == 'bridges':
                index, _, name = rest.partition('.')
                front, layer = route.layers[int(index)]
                source = _linear(backbone.stitch_layers[front][layer], name)
            elif head == 'projections':
                block, _, name = rest.partition('.')
                chain = int(block)
                seg_index, block_index = _locate(route, chain)
                layer = route.segments[seg_index].first + block_index
                source = _linear(backbone.stitch_layers[SMALL][layer], name)
            else:  # pragma: no cover - ChainedViT has no other parts
                raise KeyError(f'Unexpected ChainedViT key {key!r}.')
            if tuple(source.shape) != tuple(value.shape):
                raise RuntimeError(
                    f'Exporting stitch {route.id}: {key} has shape '
                    f'{tuple(value.shape)}, its source {tuple(source.shape)}.')
            state[key] = source.detach().clone()
    return state


def _linear(layer, name):
    """``weight`` (the merged ``W0 + B·A / r``) or ``bias`` of a stitching
    layer."""
    if name == 'weight':
        return layer.merged_weight()
    if name == 'bias':
        return layer.bias
    raise KeyError(f'A stitching layer has no {name!r} for a Linear.')


def _locate(route, chain):
    for index, seg in enumerate(route.segments):
        count = seg.last - seg.first + 1
        if chain < count:
            return index, chain
        chain -= count
    raise IndexError(f'Block {chain} is beyond the route {route.name}.')


def build_exported(cfg: dict, state: StateDict) -> ChainedViT:
    """Build the ChainedViT of :func:`export_stitch` and load its weights
    (strictly), in eval mode."""
    model = ChainedViT(**{k: v for k, v in cfg.items() if k != 'type'})
    model.load_state_dict(state, strict=True)
    return model.eval()


def lora_keys(state: StateDict) -> List[str]:
    """Keys of low-rank update factors (there are none in an export)."""
    return [k for k in state if 'lora_' in k.rsplit('.', 1)[-1]]
