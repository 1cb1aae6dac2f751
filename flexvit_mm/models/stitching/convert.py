"""Convert official SN-Netv2 checkpoints to this package.

Classification files (``snnetv2_deit3_{s_b,s_l,b_l}.pth``) hold, under
``model``, ``anchors.{0,1}.*`` in the DeiT-III reference layout
(``blocks.N.gamma_1``, ``mlp.fc1``, ...) and ``stitch_layers.{0,1}.{k}.
transform.{weight, bias, lora_A, lora_B}``.

Segmentation files (the released ADE20K / COCO-Stuff-10K SETR-naive models)
hold, under ``state_dict``, ``backbone.anchors.{0,1}.*`` in mmseg's MAE/BEiT
layout (``layers.N.ln1``, ``attn.qkv``, ``attn.relative_position_bias_table``,
``ffn.layers.0.0``, ``gamma_1``, ``patch_embed.projection``), the same
``backbone.stitch_layers`` and mmseg's ``decode_head``/``auxiliary_head``
keys, which our configs use unchanged (mmseg's ``SETRUPHead``).

Ours: ``anchors.{0,1}.*`` in timm's layout (``blocks.N.ls1.gamma``; timm's
BEiT blocks ``blocks.N.gamma_1``, ``attn.q_bias``/``v_bias`` for anchors with
relative position bias) and ``stitch_layers.{0,1}.{k}.{weight, bias, lora_A,
lora_B}``; the LoRA parts are kept unmerged. The official attention's key
bias is dropped for BEiT-style blocks: it shifts every logit of a query by
the same amount, which the softmax cancels, so the outputs are unchanged.
"""
import re
from typing import Dict

import torch
from mmengine.logging import print_log

from ...errors import FlexvitError


class IncompatibleCheckpointError(FlexvitError, ValueError):
    """A checkpoint made for other anchors, depths, widths or ranks."""


_STITCH = re.compile(r'^stitch_layers\.(\d+)\.(\d+)\.transform\.(\w+)$')


# mmseg MAE/BEiT anchor keys -> timm (BEiT-block) keys, per block.
_MAE_BLOCK = {
    'ln1': 'norm1', 'ln2': 'norm2', 'ffn.layers.0.0': 'mlp.fc1',
    'ffn.layers.1': 'mlp.fc2', 'attn.qkv': 'attn.qkv', 'attn.proj':
    'attn.proj', 'attn.relative_position_bias_table':
    'attn.relative_position_bias_table', 'gamma_1': 'gamma_1', 'gamma_2':
    'gamma_2'
}
_MAE_LAYER = re.compile(r'^layers\.(\d+)\.(.+?)(\.weight|\.bias)?$')


def is_mmseg_layout(anchor_state: Dict[str, torch.Tensor]) -> bool:
    """Whether one anchor's keys are in mmseg's MAE/BEiT layout."""
    return any(k.startswith('layers.') for k in anchor_state)


def _mae_anchor_to_timm(state, anchor):
    """One official segmentation anchor (mmseg MAE, DeiT-III style position
    embedding without a class-token slot) in timm's keys."""
    from ..backbones.anchors import has_rel_pos_bias, resample_pos_embed_to
    rel_pos = has_rel_pos_bias(anchor)
    converted = {}
    for key, value in state.items():
        if key == 'patch_embed.projection.weight':
            converted['patch_embed.proj.weight'] = value
        elif key == 'patch_embed.projection.bias':
            converted['patch_embed.proj.bias'] = value
        elif key in ('cls_token', 'pos_embed'):
            converted[key] = value
        elif key.endswith('relative_position_index'):
            continue  # a buffer, recomputed by timm
        else:
            match = _MAE_LAYER.match(key)
            if match is None or match.group(2) not in _MAE_BLOCK:
                converted[key] = value  # reported as unexpected later
                continue
            block, part, suffix = match.groups()
            name = f'blocks.{block}.{_MAE_BLOCK[part]}{suffix or ""}'
            if name.endswith('attn.qkv.bias') and rel_pos:
                q, _, v = value.chunk(3)  # the key bias cancels in softmax
                converted[name[:-len('qkv.bias')] + 'q_bias'] = q
                converted[name[:-len('qkv.bias')] + 'v_bias'] = v
            elif not rel_pos and part.startswith('gamma_'):
                converted[f'blocks.{block}.ls{part[-1]}.gamma'] = value
            else:
                converted[name] = value
    if 'pos_embed' in converted:
        converted['pos_embed'] = resample_pos_embed_to(
            converted['pos_embed'], anchor)
    return converted


def _official_anchor_to_timm(state, anchor):
    if is_mmseg_layout(state):
        return _mae_anchor_to_timm(state, anchor)
    from timm.models.vision_transformer import checkpoint_filter_fn
    from ..backbones.anchors import has_rel_pos_bias, to_rel_pos_block_keys
    state = checkpoint_filter_fn(state, anchor, adapt_layer_scale=True)
    return to_rel_pos_block_keys(state) if has_rel_pos_bias(anchor) \
        else state


def _describe_anchor(state: Dict[str, torch.Tensor], prefix: str):
    blocks = {int(k[len(prefix):].split('.')[1]) for k in state
              if k.startswith((prefix + 'blocks.', prefix + 'layers.'))}
    width = state[prefix + 'cls_token'].shape[-1] if \
        prefix + 'cls_token' in state else None
    return len(blocks), width


def convert_official_snnetv2(official: Dict[str, torch.Tensor],
                             backbone) -> Dict[str, torch.Tensor]:
    """Map an official SN-Netv2 state dict onto ``backbone``'s keys.

    Args:
        official (dict): The official state dict (the ``model`` entry).
        backbone (SNNetv2): The backbone built from the target config; its
            anchors, stitching space and LoRA rank must match.

    Returns:
        dict: A state dict that ``backbone.load_state_dict(strict=True)``
        accepts.

    Raises:
        IncompatibleCheckpointError: naming what differs (anchor depth or width, LoRA rank,
            missing or unexpected keys).
    """
    official = official.get('model', official)
    problems = []
    for index, anchor in enumerate(backbone.anchors):
        found = _describe_anchor(official, f'anchors.{index}.')
        wanted = (len(anchor.blocks), anchor.embed_dim)
        if found != wanted:
            problems.append(
                f'anchor {index}: the checkpoint has depth {found[0]}, width '
                f'{found[1]}; the config ({backbone.anchor_names[index]}) '
                f'has depth {wanted[0]}, width {wanted[1]}')
    ranks = {v.shape[0] for k, v in official.items()
             if k.endswith('.transform.lora_A')}
    checkpoint_rank = ranks.pop() if len(ranks) == 1 else (0 if not ranks
                                                             else None)
    if checkpoint_rank != backbone.lora_rank:
        problems.append(
            f'the checkpoint\'s stitching layers have LoRA rank '
            f'{checkpoint_rank}; the config has lora_rank='
            f'{backbone.lora_rank}')
    if problems:
        raise IncompatibleCheckpointError(
            'This SN-Netv2 checkpoint was made for other anchors or ranks: ' +
            '; '.join(problems) + '. Use the config of the same anchor pair '
            'and rank (e.g. configs/cls/snnetv2_deit3-s-l_in1k.py for '
            'snnetv2_deit3_s_l.pth, configs/seg/snnetv2_ade20k.py for the '
            'DeiT3 S-L ADE20K model).')

    converted = {}
    for index, anchor in enumerate(backbone.anchors):
        prefix = f'anchors.{index}.'
        state = {k[len(prefix):]: v for k, v in official.items()
                 if k.startswith(prefix)}
        for key, value in _official_anchor_to_timm(state, anchor).items():
            converted[prefix + key] = value
    ignored = []
    for key, value in official.items():
        match = _STITCH.match(key)
        if match:
            front, layer, name = match.groups()
            converted[f'stitch_layers.{front}.{layer}.{name}'] = value
        elif not key.startswith('anchors.'):
            ignored.append(key)
    if ignored:
        print_log(
            f'{len(ignored)} entries of the checkpoint are neither anchor nor '
            f'stitching-layer weights and are not converted: '
            f'{", ".join(ignored[:5])}{" ..." if len(ignored) > 5 else ""}',
            logger='current')

    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    wrong = [k for k in set(expected) & set(converted)
             if expected[k].shape != converted[k].shape]
    if missing or unexpected or wrong:
        raise IncompatibleCheckpointError(
            f'The converted checkpoint does not fit the model: missing '
            f'{missing[:6]}, unexpected {unexpected[:6]}, shape mismatch '
            f'{sorted(wrong)[:6]}.')
    return converted


def convert_official_model(checkpoint: dict, model) -> Dict[str, torch.Tensor]:
    """Map a whole official SN-Netv2 checkpoint onto ``model``'s keys.

    Classification checkpoints (backbone keys at the top level, under
    ``model``) fill ``model.backbone``; segmentation checkpoints (mmseg's
    ``state_dict`` with ``backbone.``, ``decode_head.`` and
    ``auxiliary_head.`` keys) fill the whole segmentor: the backbone is
    converted, the heads' keys are mmseg's and are kept.

    Args:
        checkpoint (dict): The loaded official file.
        model (nn.Module): The model built from the target config (with a
            ``backbone`` attribute).

    Returns:
        dict: A state dict that ``model.load_state_dict(strict=True)``
        accepts.

    Raises:
        IncompatibleCheckpointError: naming what differs.
    """
    state = checkpoint
    for key in ('state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not any(k.startswith('backbone.') for k in state):
        return {f'backbone.{k}': v for k, v in
                convert_official_snnetv2(state, model.backbone).items()}
    backbone = {k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}
    converted = {f'backbone.{k}': v for k, v in
                 convert_official_snnetv2(backbone, model.backbone).items()}
    heads = {k: v for k, v in state.items() if not k.startswith('backbone.')}
    expected = model.state_dict()
    unexpected = sorted(set(heads) - set(expected))
    wrong = sorted(k for k in set(heads) & set(expected)
                   if heads[k].shape != expected[k].shape)
    missing = sorted(k for k in set(expected) - set(heads)
                     if not k.startswith('backbone.'))
    if unexpected or wrong or missing:
        raise IncompatibleCheckpointError(
            'The checkpoint\'s heads do not fit the config\'s: missing '
            f'{missing[:6]}, unexpected {unexpected[:6]}, shape mismatch '
            f'{wrong[:6]} (e.g. another number of classes: use the config '
            'of the dataset the model was trained on).')
    converted.update(heads)
    return converted
