"""A chain of ViT block segments: one stitch of SN-Netv2 as a plain backbone.

A stitched ViT runs one route at a time: blocks ``first..last`` of one
anchor, a linear map into the other anchor's width, blocks of that anchor,
and so on. :class:`ChainedViT` is that route on its own: every segment is a
timm ViT rebuilt with only the blocks it runs (so the blocks are exactly the
anchor's block type and configuration, BEiT-style relative position bias
blocks included), the maps between segments are plain ``nn.Linear`` layers,
and only the parts a route uses are kept: the embeddings of the first
segment and, for classification, the norm and head of the last one.

It depends on timm and :mod:`.anchors` only: a model exported with
``tools/deploy/export_stitch.py`` loads and runs without any stitching code.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from .anchors import build_anchor, embed_tokens, has_rel_pos_bias

#: Values of ``out_projections`` entries.
PROJECTIONS = (None, 'linear', 'bridge')


def _set_drop_path(block: nn.Module, rate: float) -> None:
    """Give a timm ViT or BEiT block the stochastic-depth rate ``rate``."""
    from timm.layers import DropPath
    for name in ('drop_path1', 'drop_path2', 'drop_path'):
        if isinstance(getattr(block, name, None), (DropPath, nn.Identity)):
            setattr(block, name,
                    DropPath(rate) if rate > 0 else nn.Identity())


def block_drop_path(block: nn.Module) -> float:
    """The stochastic-depth rate of a timm ViT or BEiT block (0 if none)."""
    for name in ('drop_path1', 'drop_path'):
        module = getattr(block, name, None)
        if module is not None:
            return float(getattr(module, 'drop_prob', 0.))
    return 0.


@MODELS.register_module()
class ChainedViT(BaseModule):
    """Segments of timm ViT blocks joined by linear maps.

    The input is embedded by the first segment (patch embedding, position
    embedding, class token), runs through the blocks of every segment in
    order, with ``bridges[i]`` (a ``Linear`` from segment ``i``'s width to
    segment ``i + 1``'s) between segments, and ends in the last segment's
    norm and head (classification) or as the outputs of chosen blocks
    (dense prediction).

    This is the form :func:`flexvit_mm.models.stitching.export.export_stitch`
    gives one stitch of an SN-Netv2 backbone: its segments are the route's,
    its bridges the stitching layers with their low-rank update merged.

    Args:
        segments (Sequence[dict]): One :func:`build_anchor` config per
            segment: ``model_name`` (a timm ViT) with timm arguments
            (``img_size``, ``patch_size``, ``embed_dim``, ``num_heads``,
            ...), ``depth`` = the number of blocks the segment runs, and
            optionally ``rel_pos_bias``/``constant_drop_path`` (see
            :func:`build_anchor`) and ``drop_path_rates``: one
            stochastic-depth rate per block, overriding timm's schedule
            (a segment cut from a deeper model keeps the rates its blocks
            had there). Only the first segment keeps its embeddings and
            only the last one (classification) its norm and head; the
            others are replaced by ``nn.Identity``/None, so the state dict
            holds only used weights. No weight files: the weights come from
            the exported checkpoint (``load_from``).
        out_indices (Sequence[int], optional): Dense mode: the blocks whose
            outputs are returned, counted along the chain (segment 0's
            blocks first; negative values count from the end). An index
            may repeat. Every output is a ``B x C x H/p x W/p`` map of the
            tokens after the class token, without a final norm. None
            (default) means classification: the last segment's norm and
            ``forward_head`` give the logits.
        out_projections (Sequence[str | None], optional): Dense mode, one
            entry per output: None (the block output as it is),
            ``'linear'`` (a ``Linear(width, out_channels)`` of its own, one
            per block, shared by repeated indices) or ``'bridge'`` (the
            bridge that follows the block, which must end a segment).
            Defaults to no projection.
        out_channels (int, optional): Width of the ``'linear'``
            projections. Required when there is one.
        output_cls_token (bool): Dense mode: return ``[map, cls_token]``
            pairs instead of maps. Defaults to False.
        init_cfg (dict, optional): mmengine initialisation config. Without
            one the segments keep timm's initialisation; exported configs
            load their weights with ``load_from`` instead.
    """

    def __init__(self,
                 segments: Sequence[dict],
                 out_indices: Optional[Sequence[int]] = None,
                 out_projections: Optional[Sequence[Optional[str]]] = None,
                 out_channels: Optional[int] = None,
                 output_cls_token: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if len(segments) == 0:
            raise ValueError('ChainedViT needs at least one segment.')
        self.dense = out_indices is not None
        if not self.dense and (out_projections or output_cls_token):
            raise ValueError(
                'out_projections and output_cls_token are dense-mode '
                'options: give out_indices too.')
        built = []
        self._rel_pos_grids = []
        self._patch_sizes = []
        last = len(segments) - 1
        for index, cfg in enumerate(segments):
            cfg = dict(cfg)
            for key in ('checkpoint', 'init_cfg'):
                if cfg.get(key) is not None:
                    raise ValueError(
                        f'ChainedViT segment {index}: {key!r} is not '
                        'supported; load the whole model\'s weights '
                        '(load_from, or this backbone\'s init_cfg).')
                cfg.pop(key, None)
            rates = cfg.pop('drop_path_rates', None)
            vit = build_anchor(**cfg)
            if rates is not None:
                if len(rates) != len(vit.blocks):
                    raise ValueError(
                        f'ChainedViT segment {index}: {len(rates)} '
                        f'drop_path_rates for {len(vit.blocks)} blocks.')
                for block, rate in zip(vit.blocks, rates):
                    _set_drop_path(block, float(rate))
            self._rel_pos_grids.append(
                tuple(vit.patch_embed.grid_size)
                if has_rel_pos_bias(vit) else None)
            self._patch_sizes.append(tuple(vit.patch_embed.patch_size))
            if index > 0:
                # The tokens come from the previous segment.
                vit.patch_embed = nn.Identity()
                vit.cls_token = None
                vit.reg_token = None
                vit.pos_embed = None
                vit.norm_pre = nn.Identity()
            if index < last or self.dense:
                vit.norm = nn.Identity()
                vit.fc_norm = nn.Identity()
                vit.head = nn.Identity()
                if getattr(vit, 'attn_pool', None) is not None:
                    vit.attn_pool = None
            built.append(vit)
        self.segments = nn.ModuleList(built)
        widths = [vit.embed_dim for vit in built]
        self.bridges = nn.ModuleList(
            nn.Linear(widths[i], widths[i + 1]) for i in range(last))
        # chain index -> (segment, block within it)
        self._chain = [(s, b) for s, vit in enumerate(built)
                       for b in range(len(vit.blocks))]
        self.output_cls_token = output_cls_token
        self.out_indices = ()
        self.out_projections = ()
        self.out_channels = out_channels
        self.projections = nn.ModuleDict()
        if self.dense:
            self._setup_outputs(out_indices, out_projections, out_channels,
                                widths)

    def _setup_outputs(self, out_indices, out_projections, out_channels,
                       widths):
        total = len(self._chain)
        indices = []
        for c in out_indices:
            value = int(c) + total if int(c) < 0 else int(c)
            if not 0 <= value < total:
                raise ValueError(
                    f'out_indices {tuple(out_indices)}: the chain has '
                    f'{total} blocks (0..{total - 1}).')
            indices.append(value)
        projections = list(out_projections) if out_projections is not None \
            else [None] * len(indices)
        if len(projections) != len(indices):
            raise ValueError(
                f'out_projections needs one entry per output index: got '
                f'{len(projections)} for {len(indices)}.')
        for c, kind in zip(indices, projections):
            if kind not in PROJECTIONS:
                raise ValueError(f'out_projections entries must be one of '
                                 f'{PROJECTIONS}, got {kind!r}.')
            segment, block = self._chain[c]
            if kind == 'bridge' and (
                    segment == len(self.segments) - 1
                    or block != len(self.segments[segment].blocks) - 1):
                raise ValueError(
                    f'Output block {c} has out_projection \'bridge\' but '
                    'is not the last block of a segment followed by a '
                    'bridge.')
            if kind == 'linear' and str(c) not in self.projections:
                if out_channels is None:
                    raise ValueError('\'linear\' out_projections need '
                                     'out_channels.')
                self.projections[str(c)] = nn.Linear(widths[segment],
                                                     int(out_channels))
        self.out_indices = tuple(indices)
        self.out_projections = tuple(projections)

    def init_weights(self) -> None:
        """Run this backbone's own ``init_cfg`` (e.g. ``Pretrained``), if
        any; the segments otherwise keep the initialisation timm gave them
        when built (timm's own ``init_weights`` expects a whole ViT)."""
        if self.init_cfg is not None:
            super().init_weights()
        else:
            self._is_init = True

    @property
    def depth(self) -> int:
        """The number of blocks along the chain."""
        return len(self._chain)

    def _check_grid(self, grid) -> None:
        for index, window in enumerate(self._rel_pos_grids):
            if window is not None and tuple(grid) != window:
                patch = self._patch_sizes[index]
                raise ValueError(
                    f'Segment {index} has relative position bias tables '
                    f'for a {window[0]}x{window[1]} token grid '
                    f'({window[0] * patch[0]}x{window[1] * patch[1]} '
                    f'inputs), but this input gives {grid[0]}x{grid[1]}. '
                    'Feed inputs of that size (e.g. sliding-window testing '
                    'with that crop size).')

    def _to_output(self, tokens, grid):
        prefix = self.segments[0].num_prefix_tokens
        batch, _, channels = tokens.shape
        feature = tokens[:, prefix:].reshape(batch, *grid, channels)
        feature = feature.permute(0, 3, 1, 2).contiguous()
        if self.output_cls_token:
            return [feature, tokens[:, 0]]
        return feature

    def forward(self, x: torch.Tensor):
        first = self.segments[0]
        grid = first.patch_embed.dynamic_feat_size(x.shape[-2:])
        self._check_grid(grid)
        x = embed_tokens(first, x)
        # chain block -> the output positions it fills
        wanted = {}
        for k, c in enumerate(self.out_indices):
            wanted.setdefault(c, []).append(k)
        outs: List[Optional[torch.Tensor]] = [None] * len(self.out_indices)
        c = 0
        for index, segment in enumerate(self.segments):
            bridged = None
            for block in segment.blocks:
                x = block(x)
                for k in wanted.get(c, ()):
                    kind = self.out_projections[k]
                    if kind == 'linear':
                        outs[k] = self.projections[str(c)](x)
                    elif kind == 'bridge':
                        if bridged is None:
                            bridged = self.bridges[index](x)
                        outs[k] = bridged
                    else:
                        outs[k] = x
                c += 1
            if index < len(self.bridges):
                x = bridged if bridged is not None else \
                    self.bridges[index](x)
        if self.dense:
            return tuple(self._to_output(out, grid) for out in outs)
        last = self.segments[-1]
        return (last.forward_head(last.norm(x)), )
