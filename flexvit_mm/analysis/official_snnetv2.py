"""The official SN-Netv2 classification model, from a local checkout, for
side-by-side checks (parity and speed). Nothing of it is part of this
repository: the user passes the path of a ziplab/SN-Netv2 checkout.
"""
import importlib
import os.path as osp
import sys
from functools import partial
from typing import Sequence, Tuple

import torch
import torch.nn as nn

from .benchmark import BenchmarkError

__all__ = ['load_official_snnetv2', 'build_official_snnetv2',
           'official_twin']


def load_official_snnetv2(repo: str):
    """Import ``classification/models_v2.py`` and ``snnet.py`` of a
    ziplab/SN-Netv2 checkout.

    Returns:
        tuple: The two modules ``(models_v2, snnet)``.
    """
    folder = osp.join(repo, 'classification')
    if not osp.isfile(osp.join(folder, 'snnet.py')):
        raise BenchmarkError(
            f'{repo!r} is not a SN-Netv2 checkout (no classification/'
            'snnet.py). Clone github.com/ziplab/SN-Netv2 and pass its path.')
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return (importlib.import_module('models_v2'),
            importlib.import_module('snnet'))


def build_official_snnetv2(modules, anchors: Sequence[Tuple[int, int, int]],
                           img_size: int = 224, rank: int = 64,
                           num_classes: int = 1000, seed: int = 0):
    """The official classification SNNetv2 with DeiT-III anchors of the
    given ``(width, depth, heads)``, every parameter random and non-trivial
    (LayerScale, biases, LoRA B), in train mode (its LoRA stays unmerged
    until ``eval()``, the state a saved checkpoint has)."""
    models_v2, snnet = modules
    built = [
        models_v2.vit_models(
            img_size=img_size, patch_size=16, embed_dim=width, depth=depth,
            num_heads=heads, mlp_ratio=4, qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            block_layers=models_v2.Layer_scale_init_Block,
            num_classes=num_classes) for width, depth, heads in anchors
    ]
    model = snnet.SNNetv2(built, lora_r=rank)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) *
                        (0.5 if 'gamma' in name else 0.05))
    return model


def official_twin(backbone, repo: str, seed: int = 0):
    """An official SNNetv2 with the anchors of ``backbone`` (a
    classification :class:`SNNetv2` with DeiT-III anchors), random weights
    converted into ``backbone`` so both compute the same function.

    Returns:
        nn.Module: The official model in eval mode; select a stitch with
        its ``reset_stitch_id``.
    """
    from ..models.stitching.convert import convert_official_snnetv2
    if backbone.dense:
        raise BenchmarkError('The official comparison is for classification '
                             'SNNetv2 configs.')
    if tuple(backbone.space.depths) not in ((12, 24), (12, 12)):
        raise BenchmarkError(
            f'The official code only builds the right stitches for anchor '
            f'depths 12/24 and 12/12 (its rules hard-code them); these '
            f'anchors have depths {tuple(backbone.space.depths)}. Compare '
            'with a DeiT-III S-L, S-B or B-L config.')
    dims = [(a.embed_dim, len(a.blocks), a.blocks[0].attn.num_heads)
            for a in backbone.anchors]
    official = build_official_snnetv2(
        load_official_snnetv2(repo), dims,
        img_size=backbone.anchors[0].patch_embed.img_size[0],
        rank=backbone.lora_rank,
        num_classes=backbone.anchors[0].num_classes, seed=seed)
    official.train()  # unmerged LoRA, as saved checkpoints hold it
    state = {k: v.detach().clone() for k, v in official.state_dict().items()}
    backbone.load_state_dict(convert_official_snnetv2(state, backbone),
                             strict=True)
    if sorted(official.all_cfgs) != list(backbone.stitch_ids):
        raise BenchmarkError(
            'The official model has other stitch ids than ours for these '
            'anchors; is the checkout a modified SN-Netv2?')
    return official.eval()
