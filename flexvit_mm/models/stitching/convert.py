"""Convert official SN-Netv2 classification checkpoints to this package.

Official files (``snnetv2_deit3_{s_b,s_l,b_l}.pth``) hold, under ``model``,
``anchors.{0,1}.*`` in the DeiT-III reference layout (``blocks.N.gamma_1``,
``mlp.fc1``, ...) and ``stitch_layers.{0,1}.{k}.transform.{weight, bias,
lora_A, lora_B}``. Ours: ``anchors.{0,1}.*`` in timm's layout
(``blocks.N.ls1.gamma``) and ``stitch_layers.{0,1}.{k}.{weight, bias,
lora_A, lora_B}``; the LoRA parts are kept unmerged.
"""
import re
from typing import Dict

import torch

class IncompatibleCheckpointError(ValueError):
    """A checkpoint made for other anchors, depths, widths or ranks."""


_STITCH = re.compile(r'^stitch_layers\.(\d+)\.(\d+)\.transform\.(\w+)$')


def _official_anchor_to_timm(state, anchor):
    from timm.models.vision_transformer import checkpoint_filter_fn
    return checkpoint_filter_fn(state, anchor, adapt_layer_scale=True)


def _describe_anchor(state: Dict[str, torch.Tensor], prefix: str):
    blocks = {int(k.split('.')[3]) for k in state
              if k.startswith(prefix + 'blocks.')}
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
            'snnetv2_deit3_s_l.pth).')

    converted = {}
    for index, anchor in enumerate(backbone.anchors):
        prefix = f'anchors.{index}.'
        state = {k[len(prefix):]: v for k, v in official.items()
                 if k.startswith(prefix)}
        for key, value in _official_anchor_to_timm(state, anchor).items():
            converted[prefix + key] = value
    for key, value in official.items():
        match = _STITCH.match(key)
        if match:
            front, layer, name = match.groups()
            converted[f'stitch_layers.{front}.{layer}.{name}'] = value

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
