"""SN-Netv2: two pretrained ViTs stitched into one flexible backbone.

"Stitched ViTs are Flexible Vision Backbones" (arXiv 2307.00154). The
anchors are timm ViTs (e.g. DeiT-III S and L) built from their names, with
timm's own blocks; what this module adds is the routing between them, the
stitching layers and the dense outputs. The stitching space (ids, routes,
shared layers) lives in :mod:`flexvit_mm.models.stitching.space`.
"""
import contextlib
import functools
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from ..stitching.least_squares import NormalEquations
from ..stitching.prefix_cache import PrefixCache
from ..stitching.prefix_tree import PrefixTree
from ..stitching.space import LARGE, SMALL, Route, StitchingSpace
from ..stitching.stitching_layer import StitchingLayer
from .anchors import (ANCHOR_WEIGHTS_HINT, MissingWeightsError,  # noqa: F401
                      build_anchor, embed_tokens, has_rel_pos_bias,
                      load_anchor_state_dict, load_anchor_weights)

@MODELS.register_module()
class SNNetv2(BaseModule):
    """Stitched ViT backbone (SN-Netv2) for classification and dense tasks.

    Holds two anchors of one family (anchor 0 the shallower/narrower one)
    and the stitching layers between them. The network runs one route
    ("stitch") at a time:

    - in ``eval()`` mode the stitch chosen with :meth:`set_stitch`
      (``stitch_id`` at construction);
    - in ``train()`` mode the stitch set for the current iteration with
      :meth:`set_train_stitch` (by the sampling hook), or the eval stitch if
      none was set.

    Args:
        anchors (Sequence[dict]): Two anchor configs, each with
            ``model_name`` (timm), timm arguments such as ``img_size`` or
            ``drop_path_rate``, the options of :func:`build_anchor`
            (``constant_drop_path``, ``rel_pos_bias``) and optionally
            ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``: official
            DeiT-III or timm weights, loaded by :meth:`init_weights` (so
            testing a trained checkpoint does not need them). A missing
            file gets an error naming it and where to get it.
        mode (str): ``'v2'`` (SL, LS, LSL, SLS routes) or ``'v1'`` (SL
            only). Defaults to ``'v2'``.
        lora_rank (int): Rank r of the low-rank update of the stitching
            layers; 0 gives v1's fully trainable linear layers.
            Defaults to 0.
        stitch_id (int): The stitch used in eval mode. Defaults to 0 (the
            first anchor alone).
        out_indices (Sequence[int], optional): Dense mode: the blocks of the
            large anchor whose outputs are returned. Features of
            small-anchor blocks stand in for them through the S->L stitching
            layers, so every stitch returns ``len(out_indices)`` maps of
            the large width at stride 16. None (default) means
            classification: the route's last anchor's norm and head give
            the logits.
        output_cls_token (bool): Dense mode: return ``[map, cls_token]``
            pairs instead of maps (for DPT's readout). Defaults to False.
        num_classes (int, optional): Classification: classes of both
            anchors' heads. Defaults to the timm model's.
        init_cfg (dict, optional): mmengine initialisation config, e.g.
            ``dict(type='Pretrained', checkpoint=...)`` for a whole
            converted SN-Netv2 checkpoint.
    """

    def __init__(self,
                 anchors: Sequence[dict],
                 mode: str = 'v2',
                 lora_rank: int = 0,
                 stitch_id: int = 0,
                 out_indices: Optional[Sequence[int]] = None,
                 output_cls_token: bool = False,
                 num_classes: Optional[int] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if len(anchors) != 2:
            raise ValueError(f'SN-Netv2 needs two anchors, got '
                             f'{len(anchors)}.')
        self.dense = out_indices is not None
        built = []
        self._anchor_checkpoints = []
        # The arguments each anchor was built with (no weight file), for
        # rebuilding parts of it, e.g. when exporting one stitch.
        self.anchor_cfgs: List[dict] = []
        for cfg in anchors:
            cfg = dict(cfg)
            self._anchor_checkpoints.append(_anchor_checkpoint(cfg))
            if self.dense:
                # Dense inputs have any size: resample the position
                # embeddings per input; no classifier.
                cfg.update(num_classes=0, dynamic_img_size=True)
            elif num_classes is not None:
                cfg['num_classes'] = num_classes
            self.anchor_cfgs.append(dict(cfg))
            anchor = build_anchor(**cfg)
            if self.dense:
                # Dense outputs are block outputs: no final norm (the
                # official dense anchors have none either).
                anchor.norm = nn.Identity()
            built.append(anchor)
        self.anchors = nn.ModuleList(built)
        self._rel_pos_grids = [
            tuple(a.patch_embed.grid_size) if has_rel_pos_bias(a) else None
            for a in self.anchors
        ]
        depths = [len(a.blocks) for a in self.anchors]
        if depths[0] > depths[1]:
            raise ValueError(
                f'The first anchor must be the shallower one; got depths '
                f'{depths}. Swap the two anchor configs.')
        names = [cfg['model_name'] for cfg in anchors]
        self.space = StitchingSpace(depths, mode=mode)
        self.lora_rank = lora_rank
        widths = [a.embed_dim for a in self.anchors]
        self.stitch_layers = nn.ModuleList([
            nn.ModuleList([
                StitchingLayer(widths[SMALL], widths[LARGE], lora_rank)
                for _ in range(self.space.num_layers[SMALL])
            ]),
            nn.ModuleList([
                StitchingLayer(widths[LARGE], widths[SMALL], lora_rank)
                for _ in range(self.space.num_layers[LARGE])
            ]),
        ])
        self.anchor_names = names
        self.output_cls_token = output_cls_token
        self.out_indices = tuple(out_indices) if self.dense else ()
        if self.dense:
            for j in self.out_indices:
                if not 0 <= j < depths[LARGE]:
                    raise ValueError(
                        f'out_indices {tuple(out_indices)} must be blocks of '
                        f'the large anchor, 0..{depths[LARGE] - 1}.')
        self._feature_plans = {}
        self._route_steps = {}
        self._programs = {}
        self._prefix_cache = None
        self._stitch_id = self.space.check_id(stitch_id)
        self._train_stitch_id: Optional[int] = None

    def init_weights(self) -> None:
        """Load the anchors' pretrained weights (their ``init_cfg``), or,
        with this backbone's own ``init_cfg`` of type ``Pretrained``, a
        whole stitched checkpoint instead. The anchors were randomly
        initialised by timm when built."""
        own = self.init_cfg
        if isinstance(own, dict) and own.get('type') == 'Pretrained':
            super().init_weights()
            return
        for anchor, name, path in zip(self.anchors, self.anchor_names,
                                      self._anchor_checkpoints):
            if path is not None:
                load_anchor_weights(anchor, path, name)
        self._is_init = True

    # ------------------------------------------------------------ stitches
    @property
    def stitch_ids(self):
        """All valid stitch ids."""
        return self.space.stitch_ids

    @property
    def stitch_id(self) -> int:
        """The stitch used in eval mode."""
        return self._stitch_id

    def set_stitch(self, stitch_id: int) -> None:
        """Choose the stitch used in eval mode (ValueError for an unknown
        id, naming the valid ones)."""
        self._stitch_id = self.space.check_id(stitch_id)

    def set_train_stitch(self, stitch_id: Optional[int]) -> None:
        """Choose the stitch trained in the next iterations (None: train
        the eval stitch)."""
        self._train_stitch_id = None if stitch_id is None else \
            self.space.check_id(stitch_id)

    @property
    def active_stitch_id(self) -> int:
        if self.training and self._train_stitch_id is not None:
            return self._train_stitch_id
        return self._stitch_id

    def describe_stitch(self, stitch_id: int,
                        input_shape: Optional[Sequence[int]] = None) -> dict:
        """id, kind, route and the parameters the stitch actually uses;
        with ``input_shape`` (H, W) also its GFLOPs at that size (attention
        included, see :mod:`flexvit_mm.analysis.stitch_table`)."""
        route = self.space[stitch_id]
        info = dict(id=route.id, kind=route.kind, route=route.name,
                    params=self.stitch_params(stitch_id))
        if input_shape is not None:
            from ...analysis.stitch_table import compute_stitch_table
            table = compute_stitch_table(self, tuple(input_shape),
                                         [route.id])
            info['gflops'] = table[route.id]['flops'] / 1e9
        return info

    def stitch_params(self, stitch_id: int) -> int:
        """Parameters a stitch uses: its blocks, stitching layers, the
        first anchor's embeddings and (classification) the last anchor's
        norm and head; for dense outputs also the S->L layers that project
        small-anchor features."""
        route = self.space[stitch_id]
        used = set()

        def add(module):
            used.update(id(p) for p in module.parameters())

        first = self.anchors[route.first_anchor]
        add(first.patch_embed)
        for name in ('cls_token', 'pos_embed', 'reg_token'):
            if getattr(first, name, None) is not None:
                used.add(id(getattr(first, name)))
        for seg in route.segments:
            for block in self.anchors[seg.anchor].blocks[seg.first:seg.last
                                                         + 1]:
                add(block)
        for front, index in route.layers:
            add(self.stitch_layers[front][index])
        if self.dense:
            for segment_index, anchor, block in self._feature_plan(route):
                if anchor == SMALL:
                    add(self.stitch_layers[SMALL][block])
        else:
            last = self.anchors[route.last_anchor]
            add(last.norm)
            add(last.fc_norm)
            add(last.head)
        return sum(p.numel() for p in self.parameters() if id(p) in used)

    # ------------------------------------------------------------- forward
    def _feature_plan(self, route: Route):
        """Which (segment, anchor, block) emits each dense output: a large
        out index j comes from large block j or, when the route runs the
        small anchor there, from small block m(j)."""
        if route.id not in self._feature_plans:
            plan = []
            for j in self.out_indices:
                for index, seg in enumerate(route.segments):
                    block = j if seg.anchor == LARGE else \
                        self.space.small_block_of(j)
                    if seg.first <= block <= seg.last:
                        plan.append((index, seg.anchor, block))
                        break
                else:  # cannot happen for a well-formed space
                    raise RuntimeError(
                        f'Route {route.name} does not cover block {j}.')
            self._feature_plans[route.id] = plan
        return self._feature_plans[route.id]

    def _to_output(self, tokens, grid):
        prefix = self.anchors[LARGE].num_prefix_tokens
        batch, _, channels = tokens.shape
        feature = tokens[:, prefix:].reshape(batch, *grid, channels)
        # Always a copy (also for a 1x1 grid): the tokens may be a state
        # other stitches resume from, and heads may work in place.
        feature = feature.permute(0, 3, 1, 2).clone(
            memory_format=torch.contiguous_format)
        if self.output_cls_token:
            return [feature, tokens[:, 0].clone()]
        return feature

    def _check_grid(self, anchors, grid) -> None:
        for anchor in sorted(anchors):
            window = self._rel_pos_grids[anchor]
            if window is not None and tuple(grid) != window:
                patch = self.anchors[anchor].patch_embed.patch_size
                raise ValueError(
                    f'Anchor {self.anchor_names[anchor]} has relative '
                    f'position bias tables for a {window[0]}x{window[1]} '
                    f'token grid ({window[0] * patch[0]}x'
                    f'{window[1] * patch[1]} inputs), but this input gives '
                    f'{grid[0]}x{grid[1]}. Feed crops of that size (e.g. '
                    'test_cfg=dict(mode=\'slide\', crop_size=...) and the '
                    'data preprocessor\'s size), or set the anchors\' '
                    'img_size to the input size.')

    def route_steps(self, stitch_id: int) -> Tuple[tuple, ...]:
        """The steps a stitch runs, in order, as hashable tuples:
        ``('embed', anchor)``, ``('block', anchor, block, emitted)`` (with
        the indices of the dense outputs taken after that block) and
        ``('layer', front, index)``. Two stitches whose first steps are
        equal compute them identically (see :meth:`sharing_prefixes`)."""
        route = self.space[stitch_id]
        steps = self._route_steps.get(route.id)
        if steps is None:
            plan = self._feature_plan(route) if self.dense else []
            steps = [('embed', route.first_anchor)]
            layers = list(route.layers) + [None]
            for index, (seg, layer) in enumerate(zip(route.segments,
                                                     layers)):
                for block in range(seg.first, seg.last + 1):
                    # Several large out indices may map to one small block.
                    emitted = tuple(k for k, (s, _, b) in enumerate(plan)
                                    if s == index and b == block)
                    steps.append(('block', seg.anchor, block, emitted))
                if layer is not None:
                    steps.append(('layer', ) + tuple(layer))
            steps = self._route_steps[route.id] = tuple(steps)
        return steps

    def _program(self, stitch_id: int) -> '_Program':
        """A stitch's steps resolved to the modules that run them, once per
        stitch: a forward then costs what the same modules cost called in
        a row (no id checks, container lookups or plan building per call).
        """
        program = self._programs.get(stitch_id)
        if program is None:
            route = self.space[stitch_id]
            calls = []
            for step in self.route_steps(route.id):
                if step[0] == 'block':
                    _, anchor, block, emitted = step
                    projection = self.stitch_layers[SMALL][block] \
                        if emitted and anchor == SMALL else None
                    calls.append((self.anchors[anchor].blocks[block],
                                  emitted, projection))
                elif step[0] == 'layer':
                    calls.append((self.stitch_layers[step[1]][step[2]], (),
                                  None))
                else:
                    calls.append((functools.partial(
                        embed_tokens, self.anchors[step[1]]), (), None))
            program = self._programs[stitch_id] = _Program(
                route=route, calls=tuple(calls),
                first=self.anchors[route.first_anchor],
                last=self.anchors[route.last_anchor],
                grid_anchors=tuple(sorted(
                    {seg.anchor for seg in route.segments
                     if self._rel_pos_grids[seg.anchor] is not None})))
        return program

    def train(self, mode: bool = True):
        # Compiled programs hold module references: rebuild them after a
        # mode switch, so that a module swapped in meanwhile is seen.
        self._programs = {}
        return super().train(mode)

    @contextlib.contextmanager
    def sharing_prefixes(self, stitch_ids: Optional[Sequence[int]] = None,
                         max_inputs: int = 16):
        """Within the block, eval-mode forwards of the given stitches
        compute each shared prefix once per input.

        The stitches form a tree of shared first steps
        (:class:`~flexvit_mm.models.stitching.prefix_tree.PrefixTree`).
        Run them in the yielded depth-first order: each forward resumes from
        the deepest kept state it continues and keeps its own branch points,
        and states no later stitch continues are dropped, so memory stays at
        one route's branch points per input. Results equal separate
        forwards bit for bit: the same ops run on the same tensors. Inputs
        are matched by content, so the crops of a sliding-window test or a
        flipped copy made again share too.

        Args:
            stitch_ids (Sequence[int], optional): Defaults to every stitch.
            max_inputs (int): Distinct inputs kept at once. Defaults to 16.

        Yields:
            PrefixCache: ``cache.order`` is the depth-first order of the
            ids; call ``cache.clear()`` between batches.
        """
        ids = list(self.stitch_ids if stitch_ids is None else stitch_ids)
        tree = PrefixTree({i: self.route_steps(i) for i in ids})
        cache = PrefixCache(tree, max_inputs=max_inputs)
        cache.order = tree.depth_first()
        previous, self._prefix_cache = self._prefix_cache, cache
        try:
            yield cache
        finally:
            self._prefix_cache = previous

    def check_input_shape(self, input_shape: Sequence[int]) -> None:
        """Raise a ValueError naming the sizes this backbone takes if an
        ``(H, W)`` input cannot run through both anchors."""
        shape = tuple(int(v) for v in input_shape)
        for anchor, name in zip(self.anchors, self.anchor_names):
            embed = anchor.patch_embed
            patch = tuple(embed.patch_size)
            if getattr(embed, 'strict_img_size', False) and \
                    shape != tuple(embed.img_size):
                raise ValueError(
                    f'Anchor {name} takes {embed.img_size[0]}x'
                    f'{embed.img_size[1]} inputs only (a classification '
                    f'anchor without dynamic_img_size), not {shape[0]}x'
                    f'{shape[1]}. Use that size.')
            if not getattr(embed, 'dynamic_img_pad', False) and any(
                    v % p for v, p in zip(shape, patch)):
                raise ValueError(
                    f'{shape[0]}x{shape[1]} is not a multiple of anchor '
                    f'{name}\'s patch size {patch[0]}x{patch[1]}.')
        self._check_grid((SMALL, LARGE), self.anchors[SMALL].patch_embed
                         .dynamic_feat_size(shape))

    def forward(self, x: torch.Tensor):
        """Run the active stitch (:attr:`active_stitch_id`) on images.

        Args:
            x (torch.Tensor): ``(N, 3, H, W)`` images.

        Returns:
            tuple: Classification: ``(logits, )``. Dense: one ``(N, C, h,
            w)`` map per out index (``[map, cls_token]`` pairs with
            ``output_cls_token``), C the large anchor's width.
        """
        stitch_id = self._stitch_id
        if self.training and self._train_stitch_id is not None:
            stitch_id = self._train_stitch_id
        program = self._program(stitch_id)
        grid = program.first.patch_embed.dynamic_feat_size(x.shape[-2:])
        if program.grid_anchors:
            self._check_grid(program.grid_anchors, grid)
        calls = program.calls
        cache = self._prefix_cache
        if cache is not None and (self.training or stitch_id not in cache):
            cache = None
        tokens, outputs, start = x, {}, 0
        if cache is not None:
            start, state, stack = cache.resume(stitch_id, x)
            if state is not None:
                tokens, outputs = state.tokens, dict(state.outputs)
            cache.steps_run += len(calls) - start
        for t in range(start, len(calls)):
            module, emitted, projection = calls[t]
            tokens = module(tokens)
            if emitted:
                feature = tokens if projection is None else \
                    projection(tokens)
                for k in emitted:
                    outputs[k] = feature
            if cache is not None and cache.is_branch_point(stitch_id, t):
                cache.keep(stack, stitch_id, t, tokens, outputs)
        if self.dense:
            return tuple(
                self._to_output(outputs[k], grid)
                for k in range(len(self.out_indices)))
        last = program.last
        return (last.forward_head(last.norm(tokens)), )

    # ------------------------------------------------------- layer-wise
    def block_features(self, x: torch.Tensor) -> List[List[torch.Tensor]]:
        """Every block output of both anchors (for the least-squares init of
        the stitching layers)."""
        self._check_grid((SMALL, LARGE),
                         self.anchors[SMALL].patch_embed.dynamic_feat_size(
                             x.shape[-2:]))
        features = []
        for anchor in self.anchors:
            tokens = embed_tokens(anchor, x)
            outputs = []
            for block in anchor.blocks:
                tokens = block(tokens)
                outputs.append(tokens)
            features.append(outputs)
        return features

    @torch.no_grad()
    def fit_stitching_layers(self, images) -> int:
        """Initialise every stitching layer by least squares.

        Each layer maps the output of its source block to the output of its
        target block (:meth:`StitchingSpace.layer_fits`), fitted over every
        token of every image. The normal equations are streamed over the
        batches (memory O(d^2), not O(tokens x d)), summed over all ranks
        and solved in float64, so every rank ends with the same weights.
        The low-rank updates start from zero, i.e. at the solution.

        Args:
            images (Iterable[torch.Tensor]): Batches of preprocessed images.

        Returns:
            int: The number of images used on this rank.
        """
        widths = [a.embed_dim for a in self.anchors]
        fits = self.space.layer_fits()
        equations = {(f.front, f.layer): NormalEquations(
            widths[f.front], widths[1 - f.front]) for f in fits}
        was_training = self.training
        self.eval()  # fit on deterministic features (no drop-path)
        count = 0
        try:
            for batch in images:
                features = self.block_features(batch)
                for f in fits:
                    equations[(f.front, f.layer)].update(
                        features[f.front][f.source_block],
                        features[1 - f.front][f.target_block])
                count += batch.shape[0]
        finally:
            self.train(was_training)
        for (front, index), eq in equations.items():
            eq.all_reduce()
            weight, bias = eq.solve()
            self.stitch_layers[front][index].init_from_least_squares(
                weight, bias)
        return count


class _Program(NamedTuple):
    """A stitch resolved to modules (see :meth:`SNNetv2._program`)."""
    route: Route
    calls: tuple  # (callable, emitted output indices, projection or None)
    first: nn.Module
    last: nn.Module
    grid_anchors: tuple  # anchors with relative position bias tables


def _anchor_checkpoint(cfg: dict) -> Optional[str]:
    """Pop an anchor config's weight file: ``init_cfg=dict(type='Pretrained',
    checkpoint=...)`` or the short form ``checkpoint=...``."""
    checkpoint = cfg.pop('checkpoint', None)
    init_cfg = cfg.pop('init_cfg', None)
    if init_cfg is not None:
        if not (isinstance(init_cfg, dict)
                and init_cfg.get('type') == 'Pretrained'
                and init_cfg.get('checkpoint')):
            raise ValueError(
                f'An anchor\'s init_cfg must be dict(type=\'Pretrained\', '
                f'checkpoint=PATH); got {init_cfg!r}.')
        if checkpoint is not None:
            raise ValueError('Give an anchor\'s weights once: init_cfg or '
                             'checkpoint, not both.')
        checkpoint = init_cfg['checkpoint']
    return checkpoint
