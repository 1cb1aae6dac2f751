"""Official SN-Netv2 segmentation checkpoints convert exactly.

The official ADE20K / COCO-Stuff-10K models store their anchors in mmseg's
MAE layout: blocks with a relative position bias table, ``gamma_1/2`` layer
scales, a full qkv bias, DeiT-III position embeddings without a class-token
slot. The reference here is that official backbone: its blocks are mmseg's
own ``MAETransformerEncoderLayer`` (the class the official anchors are made
of), loaded with a random official-layout state dict (non-zero bias tables
and LoRA updates), and its routing is the official ``SNNetv2.forward`` of
``segmentation/mmseg/models/backbones/snnet.py`` written out by hand
(``selective_forward`` segments, S->L projections of the small anchor's
outputs). Every stitch id's features must match the converted model's.
"""
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from flexvit_mm.models.backbones.snnetv2 import SNNetv2
from flexvit_mm.models.stitching.convert import (IncompatibleCheckpointError,
                                                 convert_official_model,
                                                 convert_official_snnetv2)

OFFICIAL = osp.join(osp.dirname(__file__), 'data',
                    'official_stitch_configs.json')
IMG, PATCH = 64, 16
GRID = IMG // PATCH
RANK = 16
# (width, depth, heads): narrow anchors with the official S-L depths.
ANCHORS = [(32, 12, 2), (48, 24, 2)]
LARGE_OUT = (9, 14, 19, 23)
SMALL_OUT = tuple(j * 12 // 24 for j in LARGE_OUT)  # (4, 7, 9, 11)


class OfficialAnchor(nn.Module):
    """The official segmentation anchor (mmseg MAE with ``is_deit_3``)."""

    def __init__(self, width, depth, heads):
        super().__init__()
        from mmseg.models.backbones.mae import MAETransformerEncoderLayer
        self.patch_embed = nn.Module()
        self.patch_embed.projection = nn.Conv2d(3, width, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, GRID * GRID, width))
        self.layers = nn.ModuleList([
            MAETransformerEncoderLayer(
                embed_dims=width, num_heads=heads,
                feedforward_channels=4 * width, bias=True,
                norm_cfg=dict(type='LN', eps=1e-6),
                window_size=(GRID, GRID), init_values=1.0)
            for _ in range(depth)
        ])

    def embed(self, images):
        x = self.patch_embed.projection(images).flatten(2).transpose(1, 2)
        x = x + self.pos_embed  # DeiT-III: no position for the cls token
        return torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1)

    def selective_forward(self, x, begin, end, out_indices):
        outs = []
        for i, layer in enumerate(self.layers):
            if begin <= i <= end:
                x = layer(x)
                if i in out_indices:
                    outs.append(x)
        return x, outs


def official_state(seed=0):
    """A random official segmentor state dict (backbone + a head key)."""
    generator = torch.Generator().manual_seed(seed)
    anchors = [OfficialAnchor(*dims) for dims in ANCHORS]
    state = {}
    for index, anchor in enumerate(anchors):
        for key, value in anchor.state_dict().items():
            if key.endswith('relative_position_index'):
                state[f'backbone.anchors.{index}.{key}'] = value
                continue
            noise = torch.randn(value.shape, generator=generator)
            if key.endswith(('gamma_1', 'gamma_2')):
                value = 0.5 + 0.1 * noise
            elif key.endswith(('ln1.weight', 'ln2.weight')):
                value = 1 + 0.1 * noise
            elif key.endswith('relative_position_bias_table'):
                value = 0.5 * noise  # visibly non-zero attention bias
            else:
                value = 0.05 * noise
            state[f'backbone.anchors.{index}.{key}'] = value
    configs = json.load(open(OFFICIAL))['12/24']
    counts = {0: 12, 1: len(configs['ls_ids'])}
    widths = [w for w, _, _ in ANCHORS]
    for front in (0, 1):
        w_in, w_out = widths[front], widths[1 - front]
        for k in range(counts[front]):
            p = f'backbone.stitch_layers.{front}.{k}.transform.'
            state[p + 'weight'] = torch.randn(
                w_out, w_in, generator=generator) * 0.2
            state[p + 'bias'] = torch.randn(w_out, generator=generator) * 0.1
            state[p + 'lora_A'] = torch.randn(
                RANK, w_in, generator=generator) * 0.2
            state[p + 'lora_B'] = torch.randn(
                w_out, RANK, generator=generator) * 0.2  # non-zero
    return state


def official_features(state, config, images):
    """The official segmentation ``SNNetv2.forward`` (eval mode)."""
    anchors = []
    for index, dims in enumerate(ANCHORS):
        anchor = OfficialAnchor(*dims)
        prefix = f'backbone.anchors.{index}.'
        anchor.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                if k.startswith(prefix)})
        anchors.append(anchor.eval())
    out_indices = [SMALL_OUT, LARGE_OUT]

    def stitch(front, layer, x):
        p = f'backbone.stitch_layers.{front}.{layer}.transform.'
        weight = state[p + 'weight'] + \
            state[p + 'lora_B'] @ state[p + 'lora_A'] / RANK
        return F.linear(x, weight, state[p + 'bias'])

    comb = config['comb_id']
    if len(comb) == 1:
        segments = [(comb[0], 0, 10**6)]
        layer_ids = [-1]
    else:
        segments = [(m, b, e) for m, (b, e) in zip(comb, config['route'])]
        layer_ids = config['stitch_layer_ids']
    x = anchors[comb[0]].embed(images)
    outs = []
    for (model, begin, end), layer in zip(segments, layer_ids):
        x, found = anchors[model].selective_forward(x, begin, end,
                                                    out_indices[model])
        if model == 0:  # small features reach the large width
            mapped = [i for i in SMALL_OUT if begin <= i <= end]
            found = [stitch(0, i, f) for i, f in zip(mapped, found)]
        outs += found
        if layer != -1:
            x = stitch(model, layer, x)
    return [o[:, 1:].reshape(len(o), GRID, GRID, -1).permute(0, 3, 1, 2)
            for o in outs]


def build_ours(rank=RANK):
    anchors = [
        dict(model_name=name, img_size=IMG, patch_size=PATCH, embed_dim=w,
             depth=d, num_heads=h, rel_pos_bias=True)
        for name, (w, d, h) in zip(
            ('deit3_small_patch16_224', 'deit3_large_patch16_224'), ANCHORS)
    ]
    return SNNetv2(anchors, lora_rank=rank, out_indices=LARGE_OUT)


class Segmentor(nn.Module):
    """Just enough of an EncoderDecoder: a backbone and a head."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.decode_head = nn.Conv2d(48, 3, 1)


def test_every_stitch_matches_the_official_segmentation_backbone():
    state = official_state()
    state['decode_head.weight'] = torch.randn(3, 48, 1, 1)
    state['decode_head.bias'] = torch.randn(3)
    model = Segmentor(build_ours()).eval()
    converted = convert_official_model({'state_dict': state}, model)
    model.load_state_dict(converted, strict=True)
    assert torch.equal(model.decode_head.weight, state['decode_head.weight'])
    configs = json.load(open(OFFICIAL))['12/24']['configs']
    backbone = model.backbone
    images = torch.randn(2, 3, IMG, IMG, generator=torch.Generator()
                         .manual_seed(1))
    checked = 0
    with torch.no_grad():
        for stitch_id in backbone.stitch_ids:
            expected = official_features(state, configs[stitch_id], images)
            backbone.set_stitch(stitch_id)
            ours = backbone(images)
            assert len(ours) == len(expected) == 4, stitch_id
            for a, b in zip(ours, expected):
                error = (a - b).norm() / b.norm()
                assert error < 1e-4, (stitch_id, float(error))
            checked += 1
    assert checked == 134


def test_relative_position_bias_and_key_bias_are_handled():
    """The bias tables matter (zeroing them changes the features) and the
    dropped key bias does not (it cancels in the softmax)."""
    state = official_state(seed=3)
    model = build_ours().eval()
    backbone_state = {k[len('backbone.'):]: v for k, v in state.items()}
    model.load_state_dict(convert_official_snnetv2(backbone_state, model))
    images = torch.randn(1, 3, IMG, IMG)
    config = json.load(open(OFFICIAL))['12/24']['configs'][1]
    with torch.no_grad():
        reference = official_features(state, config, images)
        model.set_stitch(1)
        ours = model(images)
        for block in model.anchors[1].blocks:
            block.attn.relative_position_bias_table.zero_()
        without_bias = model(images)
    assert (ours[-1] - reference[-1]).norm() / reference[-1].norm() < 1e-4
    assert (without_bias[-1] - reference[-1]).norm() / \
        reference[-1].norm() > 1e-2
    # A different key bias leaves the official output unchanged.
    shifted = dict(state)
    key = 'backbone.anchors.1.layers.0.attn.qkv.bias'
    bias = shifted[key].clone()
    bias[48:96] += 3.0
    shifted[key] = bias
    with torch.no_grad():
        moved = official_features(shifted, config, images)
    torch.testing.assert_close(moved[-1], reference[-1], rtol=1e-4,
                               atol=1e-5)


def test_segmentation_checkpoint_for_other_anchors_or_rank_is_refused():
    state = {k[len('backbone.'):]: v for k, v in official_state().items()
             if k.startswith('backbone.')}
    with pytest.raises(IncompatibleCheckpointError, match='LoRA rank 16.*'
                       'lora_rank=4'):
        convert_official_snnetv2(state, build_ours(rank=4))
    narrow = SNNetv2([
        dict(model_name='deit3_small_patch16_224', img_size=IMG,
             embed_dim=32, depth=12, num_heads=2, rel_pos_bias=True),
        dict(model_name='deit3_base_patch16_224', img_size=IMG,
             embed_dim=48, depth=12, num_heads=2, rel_pos_bias=True),
    ], lora_rank=RANK, out_indices=(2, 5, 8, 11))
    with pytest.raises(IncompatibleCheckpointError, match='anchor 1: the '
                       'checkpoint has depth 24'):
        convert_official_snnetv2(state, narrow)
