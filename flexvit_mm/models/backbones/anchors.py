"""The anchors of a stitched ViT: timm ViTs built by name, and their weights.

An anchor is a timm :class:`~timm.models.vision_transformer.VisionTransformer`
(e.g. ``deit3_small_patch16_224``). For segmentation, SN-Netv2's official
anchors are DeiT-III models with BEiT-style blocks: a trainable relative
position bias table per block (zero-initialised, since DeiT-III has none)
and the layer scales named ``gamma_1/2``. ``rel_pos_bias=True`` builds that
anchor from timm parts: the ViT with timm's BEiT blocks
(:class:`timm.models.beit.Block`) as its ``block_fn``.

Weights are read from the files users have: the official DeiT-III
``deit_3_*_224_21k.pth`` (``{'model': ...}``) or timm's
``model.safetensors``/``pytorch_model.bin``. The key bias of DeiT-III's
attention is dropped for BEiT-style blocks (they have query and value biases
only). That is exact: a key bias adds ``q . b_k`` to every logit of a query,
the same for all keys, which the softmax cancels.
"""
import functools
import os.path as osp
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ...checkpoint import load_checkpoint_file, state_dict_of
from ...errors import CheckpointMismatchError, FlexvitError

ANCHOR_WEIGHTS_HINT = (
    'DeiT-III weights: the official deit_3_{small,base,large}_224_21k.pth '
    'from the facebookresearch/deit README, or timm\'s '
    'deit3_*_patch16_224.fb_in22k_ft_in1k model.safetensors from the '
    'Hugging Face hub.')


class MissingWeightsError(FlexvitError, FileNotFoundError):
    """A weight file named in a config does not exist."""


def load_anchor_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Read an anchor checkpoint: timm ``.safetensors``/``.pth`` or an
    official DeiT-III ``.pth`` (``{'model': ...}``).

    Raises:
        MissingWeightsError: naming the path and where to get the weights.
        CheckpointError: the file is unreadable, untrusted or holds no
            state dict (:func:`flexvit_mm.checkpoint.load_checkpoint_file`).
    """
    if not osp.isfile(path):
        raise MissingWeightsError(
            f'Anchor weight file {path!r} does not exist. {ANCHOR_WEIGHTS_HINT}'
            ' Download it to that path, or remove the anchor\'s init_cfg to '
            'start from random weights.')
    state = load_checkpoint_file(path)
    for key in ('model', 'state_dict'):
        if isinstance(state, dict) and key in state and isinstance(
                state[key], dict):
            state = state[key]
    return state_dict_of(state, path)


def _rel_pos_block(dim, num_heads, mlp_ratio, qkv_bias, init_values,
                   proj_drop, attn_drop, drop_path, norm_layer, act_layer,
                   window_size, qk_norm=False, scale_attn_norm=False,
                   scale_mlp_norm=False, proj_bias=True, device=None,
                   dtype=None, **unused):
    """timm's BEiT block from the arguments timm's ViT gives its blocks."""
    from timm.models.beit import Block
    if qk_norm or scale_attn_norm or scale_mlp_norm or not proj_bias:
        raise ValueError(
            'rel_pos_bias=True supports plain DeiT-III/ViT blocks only (no '
            'qk_norm, scale norms, or bias-free projections).')
    return Block(
        dim, num_heads, qkv_bias=qkv_bias, mlp_ratio=mlp_ratio,
        proj_drop=proj_drop, attn_drop=attn_drop, drop_path=drop_path,
        init_values=init_values, act_layer=act_layer, norm_layer=norm_layer,
        window_size=tuple(window_size), device=device, dtype=dtype)


def has_rel_pos_bias(anchor: nn.Module) -> bool:
    """Whether the anchor's blocks carry relative position bias tables."""
    return getattr(anchor.blocks[0].attn, 'relative_position_bias_table',
                   None) is not None


def build_anchor(model_name: str,
                 checkpoint: Optional[str] = None,
                 constant_drop_path: bool = False,
                 rel_pos_bias: bool = False,
                 **kwargs) -> nn.Module:
    """A timm ViT anchor, optionally with local weights.

    Args:
        model_name (str): A timm ViT name, e.g. ``deit3_small_patch16_224``.
        checkpoint (str, optional): Local weight file, loaded now (see
            :func:`load_anchor_weights`).
        constant_drop_path (bool): Give every block the same drop-path rate
            ``drop_path_rate`` (DeiT-III's and SN-Netv2's classification
            recipe) instead of timm's linear ramp from 0. Defaults to False.
        rel_pos_bias (bool): Use BEiT-style blocks with a relative position
            bias table per block, for a fixed token grid (the ``img_size``
            grid), as SN-Netv2's official segmentation anchors. Defaults to
            False.
        **kwargs: timm model arguments (``img_size``, ``drop_path_rate``,
            ``num_classes``, ``dynamic_img_size``, ...).
    """
    import timm
    from timm.layers import DropPath
    from timm.models.vision_transformer import VisionTransformer
    if rel_pos_bias:
        # The window of the bias tables is the token grid, known only once
        # the patch embedding exists: read it from a weightless build.
        with torch.device('meta'):
            probe = timm.create_model(model_name, pretrained=False, **kwargs)
        if not isinstance(probe, VisionTransformer):
            raise TypeError(f'{model_name!r} is a {type(probe).__name__}; '
                            'anchors must be timm VisionTransformers.')
        kwargs['block_fn'] = functools.partial(
            _rel_pos_block, window_size=probe.patch_embed.grid_size)
    anchor = timm.create_model(model_name, pretrained=False, **kwargs)
    if not isinstance(anchor, VisionTransformer):
        raise TypeError(f'{model_name!r} is a {type(anchor).__name__}; '
                        'SN-Netv2 anchors must be timm VisionTransformers.')
    if constant_drop_path:
        for module in anchor.modules():
            if isinstance(module, DropPath):
                module.drop_prob = kwargs.get('drop_path_rate', 0.)
    if checkpoint is not None:
        load_anchor_weights(anchor, checkpoint, model_name)
    return anchor


def embed_tokens(anchor: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A timm ViT's input tokens: patch embedding, position embedding and
    class token, patch dropout and pre-norm (what ``forward_features`` does
    before the blocks). The one place stitched, exported and plain models
    embed their inputs."""
    x = anchor.patch_embed(images)
    x = anchor._pos_embed(x)
    x = anchor.patch_drop(x)
    return anchor.norm_pre(x)


def to_rel_pos_block_keys(state: Dict[str, torch.Tensor]
                          ) -> Dict[str, torch.Tensor]:
    """timm ViT block keys -> timm BEiT block keys (layer scales renamed,
    the qkv bias split into query and value biases)."""
    converted = {}
    for key, value in state.items():
        if key.endswith('.ls1.gamma'):
            key = key[:-len('ls1.gamma')] + 'gamma_1'
        elif key.endswith('.ls2.gamma'):
            key = key[:-len('ls2.gamma')] + 'gamma_2'
        elif key.endswith('.attn.qkv.bias'):
            q, _, v = value.chunk(3)
            converted[key[:-len('qkv.bias')] + 'q_bias'] = q
            converted[key[:-len('qkv.bias')] + 'v_bias'] = v
            continue
        converted[key] = value
    return converted


def anchor_state_from_checkpoint(state: Dict[str, torch.Tensor],
                                 anchor: nn.Module) -> Dict[str, torch.Tensor]:
    """An official DeiT-III or timm state dict in ``anchor``'s layout, with
    the position embeddings resampled to its grid."""
    from timm.models.vision_transformer import checkpoint_filter_fn
    state = checkpoint_filter_fn(state, anchor, adapt_layer_scale=True)
    if has_rel_pos_bias(anchor):
        state = to_rel_pos_block_keys(state)
    wanted = anchor.state_dict()
    # Parts the anchor does not have in this use (a classifier for a dense
    # anchor, a final norm replaced by Identity) are not loaded.
    return {k: v for k, v in state.items()
            if k in wanted or not k.startswith(('head.', 'norm.', 'fc_norm.'))}


def resample_pos_embed_to(pos_embed: torch.Tensor,
                          anchor: nn.Module) -> torch.Tensor:
    """Resample a position embedding to ``anchor``'s token grid (bicubic, as
    mmseg and timm do); its class-token slots, if any, are kept."""
    from timm.layers import resample_abs_pos_embed
    if pos_embed.shape == anchor.pos_embed.shape:
        return pos_embed
    prefix = 0 if getattr(anchor, 'no_embed_class', False) else \
        anchor.num_prefix_tokens
    return resample_abs_pos_embed(
        pos_embed, new_size=anchor.patch_embed.grid_size,
        num_prefix_tokens=prefix)


def load_anchor_weights(anchor: nn.Module, checkpoint: str,
                        model_name: str = 'anchor') -> None:
    """Load an official DeiT-III or timm weight file into an anchor.

    Relative position bias tables, which DeiT-III does not have, start at
    zero (no bias), as in SN-Netv2's segmentation anchors.

    Raises:
        MissingWeightsError: the file does not exist.
        CheckpointMismatchError: the file holds another model (names the
            keys).
    """
    raw = load_anchor_state_dict(checkpoint)
    state = anchor_state_from_checkpoint(raw, anchor)
    missing, unexpected = anchor.load_state_dict(state, strict=False)
    tables = [k for k in missing if 'relative_position_bias_table' in k]
    missing = [k for k in missing if k not in tables]
    if missing or unexpected:
        raise CheckpointMismatchError(
            f'{checkpoint!r} does not fit the anchor {model_name!r}: '
            f'{len(missing)} missing keys {missing[:8]}, {len(unexpected)} '
            f'unexpected keys {unexpected[:8]}. Is it a checkpoint of '
            'another model?')
    for name in tables:
        nn.init.zeros_(anchor.get_parameter(name))
    unused = [k for k in raw if k not in state and k.startswith(
        ('head.', 'norm.', 'fc_norm.'))]
    notes = [f'{len(unused)} of the file\'s tensors not used here '
             '(classifier / final norm)'] if unused else []
    if tables:
        notes.append(f'{len(tables)} relative position bias tables start '
                     'at zero')
    print_log(f'Loaded anchor {model_name} from {checkpoint}'
              + (f' ({"; ".join(notes)})' if notes else ''),
              logger='current')
