"""Layer-wise learning-rate decay for a stitched backbone (SN-Netv2).

Layer-wise lr decay (BEiT, MAE, ViTDet) gives a parameter at depth ``t`` of
an ``L``-block ViT the learning rate ``lr * rate ** (L + 1 - t)``: the
embeddings (``t = 0``) move least, the last block and the head most. The
layer-decay constructors of mmseg, mmdet and mmpretrain cannot express this
for a stitched backbone: they read the depth from ``backbone.layers.<i>`` /
``backbone.blocks.<i>`` and a single ``num_layers``, or from the
backbone's class name, while SN-Netv2 holds two anchors of different depths
(``anchors.<a>.blocks.<i>``) and stitching layers that belong to neither.

:class:`StitchedLayerDecayOptimWrapperConstructor` counts every block's
depth within its own anchor, so each anchor decays exactly as it would when
fine-tuned alone (the recipe its pretrained weights were tuned with), and
puts each stitching layer between the two blocks it joins.
"""
import inspect
import logging
import math
import numbers
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                               OPTIMIZERS)

from ...models.stitching.selection import find_stitched_backbone

__all__ = ['StitchedLayerDecayOptimWrapperConstructor']

#: Anchor parameters (first name component) at depth 0.
EMBEDDING_NAMES = frozenset({
    'patch_embed', 'cls_token', 'pos_embed', 'reg_token', 'dist_token',
    'mask_token', 'norm_pre'
})
#: Parameters (last name component) never weight-decayed, whatever their
#: shape; every parameter with ``ndim <= 1`` is not decayed either.
NO_DECAY_NAMES = frozenset({
    'pos_embed', 'cls_token', 'reg_token', 'dist_token', 'mask_token',
    'relative_position_bias_table'
})
#: mmengine options that this constructor's rule already implies when 0.
IMPLIED_ZERO_KEYS = ('norm_decay_mult', 'bias_decay_mult', 'flat_decay_mult')
SUPPORTED_KEYS = ('decay_rate', 'custom_keys') + IMPLIED_ZERO_KEYS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class StitchedLayerDecayOptimWrapperConstructor(
        DefaultOptimWrapperConstructor):
    """Layer-wise lr decay for models whose backbone is SN-Netv2.

    One constructor for mmseg, mmdet and mmpretrain: it is registered in
    mmengine's root registry, which their child registries fall back to.

    **Learning rate.** With ``d_a`` the depth of anchor ``a`` and ``r_a``
    its decay rate, a parameter of anchor ``a`` at depth ``t`` gets
    ``lr * r_a ** (d_a + 1 - t)``, where ``t = 0`` for the embeddings
    (``patch_embed``, ``cls_token``, ``pos_embed``, ``reg_token``,
    ``norm_pre``), ``t = i + 1`` for block ``i`` and ``t = d_a + 1`` (scale
    1) for the final ``norm``/``fc_norm``/``head`` and anything else of the
    anchor. Depths are counted within each anchor, not along a route: a
    route's depth changes with the stitch sampled at every iteration, but
    a parameter needs one learning rate, and per-anchor depths give each
    anchor the schedule it would have when fine-tuned alone.

    A stitching layer joins the output of block ``source_block`` of its
    front anchor to block ``target_block + 1`` of the other anchor, where
    the route resumes (:meth:`StitchingSpace.layer_fits`). Its scale is the
    geometric mean of those two blocks' scales: it sits between them on
    every route that uses it, so its lr lies halfway between theirs on the
    log scale. The resume depth ``target_block + 2`` is ``d + 1`` (scale 1)
    for the S->L layer after the last small block, which resumes no large
    block but feeds the output (dense mode) -- the same depth as the final
    norm, so no special case is needed.

    Everything outside the stitched backbone (neck, heads) gets scale 1.

    **Weight decay.** ``weight_decay`` for matrices and kernels; 0 for all
    parameters with ``ndim <= 1`` (norms, biases, layer-scale gammas,
    BEiT's ``q_bias``/``v_bias``) and for ``pos_embed``, ``cls_token``,
    ``reg_token``, ``dist_token``, ``mask_token`` and
    ``relative_position_bias_table``, in the whole model.

    **custom_keys** work as in mmengine's ``DefaultOptimWrapperConstructor``
    (the longest key contained in the parameter name wins, ties go to the
    alphabetically first) but are applied on top of the rule above:
    ``lr_mult`` multiplies the layer-decay lr and ``decay_mult`` the rule's
    weight decay (so a key can lower decay, never turn it on for a
    parameter the rule exempts). Other entries of a key (e.g. ``betas``)
    are copied into the parameter's group, as mmengine does.

    Parameters with ``requires_grad=False`` (the frozen least-squares
    ``W0`` of LoRA stitching layers) are left out of the optimizer, as
    mmengine's default constructor does whenever ``paramwise_cfg`` is set,
    and are named in one warning.

    Parameters with equal (lr, weight decay, custom entries) share one
    param group. Each group also records ``lr_scale`` (its lr over the
    base lr, custom ``lr_mult`` included) and ``layer`` (which depths it
    holds, e.g. ``'S.block0, L.block3'``); the groups with scale 1 come
    first because the runner logs the first group's lr as ``lr``. Param
    schedulers scale every group's lr by the same factor, keeping the
    ratios.

    Args:
        optim_wrapper_cfg (dict): The optim wrapper config, with
            ``optimizer`` (``lr`` is required; ``weight_decay`` optional).
        paramwise_cfg (dict): Options:

            - ``decay_rate`` (float | list[float]): Required. The decay
              rate in (0, 1], or one per anchor ``[small, large]`` (e.g.
              ``[0.7, 0.8]`` as ViTDet for 12 and 24 blocks).
            - ``custom_keys`` (dict): Optional, see above.
            - ``norm_decay_mult``, ``bias_decay_mult``,
              ``flat_decay_mult``: accepted only as 0, which the rule
              implies (so inherited base configs keep working).

    Raises:
        ValueError: For a missing or invalid ``decay_rate``, an unknown
            ``paramwise_cfg`` key (e.g. mmseg's ``num_layers``: depths
            are read from the backbone) or a missing ``lr``.
        TypeError: When called on a model without an SN-Netv2 backbone.

    Example:
        >>> optim_wrapper = dict(
        ...     type='AmpOptimWrapper',
        ...     optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
        ...                    weight_decay=0.05),
        ...     constructor='StitchedLayerDecayOptimWrapperConstructor',
        ...     paramwise_cfg=dict(
        ...         decay_rate=[0.7, 0.8],  # DeiT3-B (12), DeiT3-L (24)
        ...         custom_keys={'decode_head': dict(lr_mult=10.)}))
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        name = type(self).__name__
        cfg = self.paramwise_cfg
        unknown = sorted(set(cfg) - set(SUPPORTED_KEYS))
        if unknown:
            raise ValueError(
                f'{name}: unsupported paramwise_cfg keys {unknown}; '
                f'supported: {list(SUPPORTED_KEYS)}. Depths are read from '
                'the backbone (no num_layers/decay_type). When inheriting '
                'another layer-decay config, use paramwise_cfg=dict('
                '_delete_=True, decay_rate=...).')
        for key in IMPLIED_ZERO_KEYS:
            if key in cfg and cfg[key] != 0:
                raise ValueError(
                    f'{name}: {key}={cfg[key]!r} is not supported; 1-D '
                    'parameters (norms, biases) are never weight-decayed '
                    f'here, so only {key}=0 is accepted.')
        if 'decay_rate' not in cfg:
            raise ValueError(f'{name}: paramwise_cfg needs decay_rate (a '
                             'float, or [small, large] per anchor).')
        self.decay_rates = _parse_rates(cfg['decay_rate'], name)
        if self.base_lr is None:
            raise ValueError(f'{name}: the optimizer config needs an lr.')

    # ----------------------------------------------------------- scales
    def depth_scales(self, depths) -> List[List[float]]:
        """``scales[a][t]``: lr scale of depth ``t`` (0 .. d_a + 1) of
        anchor ``a``."""
        return [[rate**(depth + 1 - t) for t in range(depth + 2)]
                for rate, depth in zip(self.decay_rates, depths)]

    def stitch_scales(self, backbone) -> Dict[Tuple[int, int], float]:
        """``{(front, layer): scale}`` of every stitching layer."""
        depths = [len(anchor.blocks) for anchor in backbone.anchors]
        scales = self.depth_scales(depths)
        out = {}
        for fit in backbone.space.layer_fits():
            other = 1 - fit.front
            source = scales[fit.front][fit.source_block + 1]
            # The resume block target_block + 1 has depth target_block + 2;
            # past the last block this is d + 1, i.e. the output (scale 1).
            resume = scales[other][min(fit.target_block + 2,
                                       depths[other] + 1)]
            out[(fit.front, fit.layer)] = math.sqrt(source * resume)
        return out

    def _backbone_position(self, rel_name, backbone, depths, stitch_scales,
                           scales) -> Tuple[float, str]:
        """(lr scale, label) of a backbone parameter."""
        names = backbone.space.anchor_names
        parts = rel_name.split('.')
        if parts[0] == 'anchors' and len(parts) > 2:
            a = int(parts[1])
            if parts[2] == 'blocks':
                t = int(parts[3]) + 1
                label = f'block{t - 1}'
            elif parts[2] in EMBEDDING_NAMES:
                t, label = 0, 'embed'
            else:
                t, label = depths[a] + 1, 'head'
            return scales[a][t], f'{names[a]}.{label}'
        if parts[0] == 'stitch_layers' and len(parts) > 3:
            front, layer = int(parts[1]), int(parts[2])
            key = (front, layer)
            if key not in stitch_scales:
                raise RuntimeError(
                    f'{type(self).__name__}: stitching layer {key} of the '
                    'backbone is not in its stitching space.')
            return stitch_scales[key], \
                f'{names[front]}{names[1 - front]}.{layer}'
        return 1.0, f'backbone.{parts[0]}'

    # ---------------------------------------------------------- building
    def _find_backbone(self, model):
        name = type(self).__name__
        try:
            backbone = find_stitched_backbone(model)
        except TypeError:
            raise TypeError(
                f'{name} needs a model whose backbone is SN-Netv2; '
                f'{type(model).__name__} has no stitched backbone. For a '
                'plain ViT use mmpretrain\'s LearningRateDecayOptim'
                'WrapperConstructor or mmseg/mmdet\'s LayerDecayOptimizer'
                'Constructor, or drop `constructor` for mmengine\'s '
                'DefaultOptimWrapperConstructor.') from None
        for attr in ('anchors', 'stitch_layers', 'space'):
            if not hasattr(backbone, attr):
                raise TypeError(
                    f'{name} needs an SN-Netv2 backbone (anchors, '
                    f'stitch_layers and a stitching space); '
                    f'{type(backbone).__name__} has no {attr!r}.')
        for prefix, module in model.named_modules():
            if module is backbone:
                return backbone, prefix + '.' if prefix else ''
        raise TypeError(f'{name}: the stitched backbone is not a submodule '
                        f'of {type(model).__name__}.')

    def param_groups(self, model: nn.Module) -> List[dict]:
        """The optimizer's param groups for ``model`` (unwrapped).

        Returns:
            list[dict]: Groups with ``params``, ``lr``, ``weight_decay``
            (unless the optimizer config has none, for decayed groups),
            ``lr_scale``, ``layer`` and any extra ``custom_keys`` entries.
        """
        backbone, prefix = self._find_backbone(model)
        depths = [len(anchor.blocks) for anchor in backbone.anchors]
        scales = self.depth_scales(depths)
        stitch_scales = self.stitch_scales(backbone)
        custom_keys = self.paramwise_cfg.get('custom_keys', {})
        sorted_keys = sorted(sorted(custom_keys), key=len, reverse=True)

        groups: 'OrderedDict[tuple, dict]' = OrderedDict()
        frozen = []
        # named_parameters() yields a shared parameter once, so tied
        # weights never land in two groups.
        for name, param in model.named_parameters():
            if not param.requires_grad:
                frozen.append(name)
                continue
            if prefix and not name.startswith(prefix):
                scale, label = 1.0, name.split('.')[0]
            else:
                scale, label = self._backbone_position(
                    name[len(prefix):], backbone, depths, stitch_scales,
                    scales)
            leaf = name.rsplit('.', 1)[-1]
            decay = not (param.ndim <= 1 or leaf in NO_DECAY_NAMES)
            wd = self.base_wd if decay else 0.0
            extras = {}
            # mmengine matches custom keys against '<module path>.<name>',
            # which reads '.<name>' for the model's own parameters.
            match_name = name if '.' in name else '.' + name
            key = next((k for k in sorted_keys if k in match_name), None)
            if key is not None:
                extras = dict(custom_keys[key])
                scale *= extras.pop('lr_mult', 1.)
                decay_mult = extras.pop('decay_mult', 1.)
                if wd is not None:
                    wd = wd * decay_mult
                label = f'{label}[{key}]'
            lr = self.base_lr * scale
            group_key = (f'{lr:.12g}', None if wd is None else f'{wd:.12g}',
                         repr(sorted(extras.items())))
            group = groups.get(group_key)
            if group is None:
                group = dict(params=[], lr=lr, lr_scale=scale, layer=[])
                if wd is not None:
                    group['weight_decay'] = wd
                group.update(extras)
                groups[group_key] = group
            group['params'].append(param)
            if label not in group['layer']:
                group['layer'].append(label)

        result = list(groups.values())
        for group in result:
            group['layer'] = ', '.join(group['layer'])
        # mmengine's runner logs the first group's lr as "lr": put the
        # base-lr groups first so that the logged value is the base lr.
        result.sort(key=lambda g: (not math.isclose(g['lr_scale'], 1.0),
                                   -g['lr_scale']))
        self._log_summary(backbone, depths, scales, stitch_scales, result,
                          frozen)
        return result

    def _log_summary(self, backbone, depths, scales, stitch_scales, groups,
                     frozen):
        names = backbone.space.anchor_names
        lines = [
            f'{type(self).__name__}: base lr {self.base_lr:g}, lr scale by '
            'depth (0 = embeddings, i+1 = block i, d+1 = norm/head):'
        ]
        header = ['depth'] + [
            f'{names[a]} (d={depths[a]}, rate {self.decay_rates[a]:g})'
            for a in range(2)
        ]
        widths = [len(h) for h in header]
        lines.append('  '.join(h.ljust(w) for h, w in zip(header, widths)))
        for t in range(max(depths) + 2):
            row = [str(t)] + [
                f'{scales[a][t]:.4g}' if t <= depths[a] + 1 else ''
                for a in range(2)
            ]
            lines.append('  '.join(c.ljust(w) for c, w in zip(row, widths)))
        for front in range(2):
            layers = sorted(k for f, k in stitch_scales if f == front)
            lines.append(f'stitching {names[front]}->{names[1 - front]}: ' +
                         ' '.join(f'{k}:{stitch_scales[(front, k)]:.4g}'
                                  for k in layers))
        lines.append('outside the backbone: 1 (times custom_keys lr_mult); '
                     f'{len(groups)} param groups, '
                     f'{sum(len(g["params"]) for g in groups)} tensors.')
        print_log('\n'.join(lines), logger='current')
        if frozen:
            shown = ', '.join(frozen[:6])
            more = f' and {len(frozen) - 6} more' if len(frozen) > 6 else ''
            print_log(
                f'{type(self).__name__}: {len(frozen)} parameters with '
                f'requires_grad=False are not optimized: {shown}{more}.',
                logger='current', level=logging.WARNING)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optim wrapper for ``model`` (possibly DDP-wrapped)."""
        if hasattr(model, 'module'):
            model = model.module
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cls = optimizer_cfg['type']
        if isinstance(optimizer_cls, str):
            with OPTIMIZERS.switch_scope_and_registry(None) as registry:
                optimizer_cls = registry.get(optimizer_cfg['type'])
        # Some optimizers (colossalai's HybridAdam) name their first
        # argument model_params, not params; mmengine fills it by position.
        first_arg = next(iter(inspect.signature(optimizer_cls).parameters))
        optimizer_cfg[first_arg] = self.param_groups(model)
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(
            optim_wrapper_cfg, default_args=dict(optimizer=optimizer))


def _parse_rates(value, name) -> Tuple[float, float]:
    """Two decay rates (small, large) from a float or a pair."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f'{name}: decay_rate as a list needs one rate '
                             f'per anchor [small, large], got {value!r}.')
        rates = tuple(value)
    else:
        rates = (value, value)
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) \
                or not 0 < rate <= 1:
            raise ValueError(f'{name}: decay_rate must be in (0, 1], got '
                             f'{value!r}.')
    return tuple(float(r) for r in rates)
