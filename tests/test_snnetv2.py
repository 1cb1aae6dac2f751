"""The SN-Netv2 backbone: official parity through the converter, dense
outputs, the least-squares fit, weights and errors.

The parity reference is an independent functional implementation of the
official forward (DeiT-III blocks, official routes from the committed
output of ``get_stitch_configs_bidirection``, LoRA W0 + B·A/r), run on a
random checkpoint written in the official key layout.
"""
import json
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from flexvit_mm.models import SNNetv2
from flexvit_mm.models.backbones.snnetv2 import build_anchor
from flexvit_mm.models.stitching.convert import convert_official_snnetv2

OFFICIAL = osp.join(osp.dirname(__file__), 'data',
                    'official_stitch_configs.json')
IMG = 32
CLASSES = 5
# (width, depth, heads) of narrow anchors with the official depths
NARROW = {'s': (16, 12, 2), 'b': (24, 12, 2), 'l': (24, 24, 2)}
TIMM = {'s': 'deit3_small_patch16_224', 'b': 'deit3_base_patch16_224',
        'l': 'deit3_large_patch16_224'}


def official_anchor_state(width, depth, generator):
    """Random DeiT-III reference weights (models_v2.py key layout)."""

    def rand(*shape, scale=0.05):
        return torch.randn(*shape, generator=generator) * scale

    state = {
        'cls_token': rand(1, 1, width),
        'pos_embed': rand(1, (IMG // 16)**2, width),
        'patch_embed.proj.weight': rand(width, 3, 16, 16),
        'patch_embed.proj.bias': rand(width),
        'norm.weight': 1 + rand(width),
        'norm.bias': rand(width),
        'head.weight': rand(CLASSES, width),
        'head.bias': rand(CLASSES),
    }
    for i in range(depth):
        p = f'blocks.{i}.'
        state.update({
            p + 'norm1.weight': 1 + rand(width), p + 'norm1.bias': rand(width),
            p + 'attn.qkv.weight': rand(3 * width, width),
            p + 'attn.qkv.bias': rand(3 * width),
            p + 'attn.proj.weight': rand(width, width),
            p + 'attn.proj.bias': rand(width),
            p + 'gamma_1': rand(width, scale=0.5),
            p + 'norm2.weight': 1 + rand(width), p + 'norm2.bias': rand(width),
            p + 'mlp.fc1.weight': rand(4 * width, width),
            p + 'mlp.fc1.bias': rand(4 * width),
            p + 'mlp.fc2.weight': rand(width, 4 * width),
            p + 'mlp.fc2.bias': rand(width),
            p + 'gamma_2': rand(width, scale=0.5),
        })
    return state


def official_checkpoint(pair, rank, seed=0):
    generator = torch.Generator().manual_seed(seed)
    dims = [NARROW[k] for k in pair]
    state = {}
    for index, (width, depth, _) in enumerate(dims):
        for key, value in official_anchor_state(width, depth,
                                                generator).items():
            state[f'anchors.{index}.{key}'] = value
    (w0, d0, _), (w1, d1, _) = dims
    counts = {0: d0, 1: len(
        json.load(open(OFFICIAL))[f'{d0}/{d1}']['ls_ids'])}
    for front, (w_in, w_out) in ((0, (w0, w1)), (1, (w1, w0))):
        for k in range(counts[front]):
            p = f'stitch_layers.{front}.{k}.transform.'
            state[p + 'weight'] = torch.randn(
                w_out, w_in, generator=generator) * 0.2
            state[p + 'bias'] = torch.randn(w_out, generator=generator) * 0.1
            if rank:
                state[p + 'lora_A'] = torch.randn(
                    rank, w_in, generator=generator) * 0.2
                state[p + 'lora_B'] = torch.randn(
                    w_out, rank, generator=generator) * 0.2  # non-zero
    return {'model': state}


# ------------------------------------------- the official forward, by hand
def ref_block(x, s, p, heads):
    b, n, c = x.shape
    h = F.layer_norm(x, (c, ), s[p + 'norm1.weight'], s[p + 'norm1.bias'],
                     1e-6)
    qkv = F.linear(h, s[p + 'attn.qkv.weight'], s[p + 'attn.qkv.bias'])
    q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1)) * (c // heads)**-0.5
    h = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
    h = F.linear(h, s[p + 'attn.proj.weight'], s[p + 'attn.proj.bias'])
    x = x + s[p + 'gamma_1'] * h
    h = F.layer_norm(x, (c, ), s[p + 'norm2.weight'], s[p + 'norm2.bias'],
                     1e-6)
    h = F.linear(F.gelu(F.linear(h, s[p + 'mlp.fc1.weight'],
                                 s[p + 'mlp.fc1.bias'])),
                 s[p + 'mlp.fc2.weight'], s[p + 'mlp.fc2.bias'])
    return x + s[p + 'gamma_2'] * h


def ref_stitch(x, s, front, layer, rank):
    p = f'stitch_layers.{front}.{layer}.transform.'
    weight = s[p + 'weight']
    if rank:
        weight = weight + s[p + 'lora_B'] @ s[p + 'lora_A'] / rank
    return F.linear(x, weight, s[p + 'bias'])


def ref_forward(state, config, images, heads, rank):
    """Official SNNetv2.forward, classification, eval mode."""
    s = state['model']
    comb = config['comb_id']
    a = f'anchors.{comb[0]}.'
    x = F.conv2d(images, s[a + 'patch_embed.proj.weight'],
                 s[a + 'patch_embed.proj.bias'], stride=16)
    x = x.flatten(2).transpose(1, 2) + s[a + 'pos_embed']
    x = torch.cat([s[a + 'cls_token'].expand(x.shape[0], -1, -1), x], 1)
    if len(comb) == 1:
        segments, layers = [(comb[0], 0, 10**6)], [-1]
    else:
        segments = [(m, b, e) for m, (b, e) in zip(comb, config['route'])]
        layers = config['stitch_layer_ids']
    for (model, begin, end), layer in zip(segments, layers):
        prefix = f'anchors.{model}.'
        depth = sum(1 for k in s if k.startswith(prefix + 'blocks.')
                    and k.endswith('.gamma_1'))
        for i in range(begin, min(end, depth - 1) + 1):
            x = ref_block(x, s, f'{prefix}blocks.{i}.', heads[model])
        if layer != -1:
            x = ref_stitch(x, s, model, layer, rank)
    last = f'anchors.{comb[-1]}.'
    x = F.layer_norm(x, (x.shape[-1], ), s[last + 'norm.weight'],
                     s[last + 'norm.bias'], 1e-6)
    return F.linear(x[:, 0], s[last + 'head.weight'], s[last + 'head.bias'])


def build_ours(pair, rank, **kwargs):
    anchors = [
        dict(model_name=TIMM[k], img_size=IMG, embed_dim=NARROW[k][0],
             depth=NARROW[k][1], num_heads=NARROW[k][2]) for k in pair
    ]
    return SNNetv2(anchors, lora_rank=rank, **kwargs)


@pytest.mark.parametrize('pair,rank', [('sl', 64), ('sb', 3), ('sl', 0)])
def test_converted_official_checkpoint_matches_official_forward(pair, rank):
    depths = f'{NARROW[pair[0]][1]}/{NARROW[pair[1]][1]}'
    configs = json.load(open(OFFICIAL))[depths]['configs']
    checkpoint = official_checkpoint(pair, rank)
    model = build_ours(pair, rank, num_classes=CLASSES).eval()
    model.load_state_dict(
        convert_official_snnetv2(checkpoint['model'], model), strict=True)
    images = torch.randn(2, 3, IMG, IMG,
                         generator=torch.Generator().manual_seed(3))
    heads = [NARROW[k][2] for k in pair]
    assert len(model.stitch_ids) == 134
    with torch.no_grad():
        for stitch_id in model.stitch_ids:
            model.set_stitch(stitch_id)
            expected = ref_forward(checkpoint, configs[stitch_id], images,
                                   heads, rank)
            actual = model(images)[0]
            error = (actual - expected).abs().max() / expected.abs().max()
            assert error < 1e-4, (stitch_id, error.item())


def test_converter_refuses_other_anchors_and_ranks():
    model = build_ours('sl', 4, num_classes=CLASSES)
    with pytest.raises(ValueError, match='LoRA rank 3.*lora_rank=4'):
        convert_official_snnetv2(official_checkpoint('sl', 3)['model'], model)
    with pytest.raises(ValueError, match='anchor 1: the checkpoint has depth '
                       '12, width 24.*depth 24, width 24'):
        convert_official_snnetv2(official_checkpoint('sb', 4)['model'], model)


def test_state_dict_round_trip_in_eval_mode_is_exact():
    model = build_ours('sl', 4, num_classes=CLASSES)
    model.load_state_dict(convert_official_snnetv2(
        official_checkpoint('sl', 4)['model'], model))
    images = torch.randn(2, 3, IMG, IMG)
    model.eval().set_stitch(80)
    with torch.no_grad():
        before = model(images)[0]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model.eval()
    restored = build_ours('sl', 4, num_classes=CLASSES).eval()
    restored.load_state_dict(state, strict=True)
    restored.set_stitch(80)
    with torch.no_grad():
        assert torch.equal(restored(images)[0], before)
        assert torch.equal(model(images)[0], before)
    for key, value in restored.state_dict().items():
        assert torch.equal(value, state[key])


def test_unknown_stitch_ids_name_the_valid_ones():
    model = build_ours('sl', 0, num_classes=CLASSES)
    for bad in (13, 135, -1):
        with pytest.raises(ValueError, match='valid ids are 0-12, 14-134'):
            model.set_stitch(bad)
    with pytest.raises(ValueError, match='0-12, 14-134'):
        build_ours('sl', 0, num_classes=CLASSES, stitch_id=13)


def test_dense_outputs_have_the_large_width_for_every_stitch():
    model = build_ours('sl', 2, out_indices=(9, 14, 19, 23)).eval()
    images = torch.randn(1, 3, 48, 80)  # not the anchors' img_size
    width = NARROW['l'][0]
    with torch.no_grad():
        for stitch_id in model.stitch_ids:
            model.set_stitch(stitch_id)
            features = model(images)
            assert [tuple(f.shape) for f in features] == [(1, width, 3, 5)
                                                          ] * 4
        # The small anchor alone: its blocks m(j) = (4, 7, 9, 11), projected
        # to the large width by the S->L layers of those blocks.
        model.set_stitch(0)
        features = model(images)
        small = model.block_features(images)[0]
        for feature, block in zip(features, (4, 7, 9, 11)):
            tokens = model.stitch_layers[0][block](small[block])[:, 1:]
            expected = tokens.transpose(1, 2).reshape(1, width, 3, 5)
            torch.testing.assert_close(feature, expected)


def test_dense_output_with_cls_token():
    model = build_ours('sl', 0, out_indices=(23, ),
                       output_cls_token=True).eval()
    with torch.no_grad():
        (feature, cls_token), = model(torch.randn(2, 3, 32, 32))
    assert feature.shape == (2, NARROW['l'][0], 2, 2)
    assert cls_token.shape == (2, NARROW['l'][0])


def test_least_squares_fit_equals_the_pseudo_inverse_solution():
    model = build_ours('sl', 4, num_classes=CLASSES)
    batches = [torch.randn(2, 3, IMG, IMG) for _ in range(3)]
    model.fit_stitching_layers(iter(batches))
    model.eval()
    with torch.no_grad():
        features = [model.block_features(b) for b in batches]
    for fit in model.space.layer_fits():
        x = torch.cat([f[fit.front][fit.source_block] for f in features])
        y = torch.cat([f[1 - fit.front][fit.target_block] for f in features])
        x = x.reshape(-1, x.shape[-1]).double()
        y = y.reshape(-1, y.shape[-1]).double()
        solution = torch.linalg.pinv(torch.cat(
            [x, torch.ones(len(x), 1, dtype=x.dtype)], 1)) @ y
        layer = model.stitch_layers[fit.front][fit.layer]
        torch.testing.assert_close(layer.weight.double(), solution[:-1].T,
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer.bias.double(), solution[-1],
                                   rtol=1e-4, atol=1e-5)
        assert torch.count_nonzero(layer.lora_B) == 0


def test_anchor_weights_from_official_and_timm_files(tmp_path):
    generator = torch.Generator().manual_seed(0)
    width, depth, heads = NARROW['s']
    official = official_anchor_state(width, depth, generator)
    path = str(tmp_path / 'deit_3_small_224_21k.pth')
    torch.save({'model': official}, path)
    kwargs = dict(img_size=IMG, embed_dim=width, depth=depth,
                  num_heads=heads, num_classes=CLASSES)
    anchor = build_anchor('deit3_small_patch16_224', path, **kwargs).eval()
    assert torch.equal(anchor.blocks[3].ls1.gamma, official[
        'blocks.3.gamma_1'])
    # A timm-layout file, saved for a larger input: the position embedding
    # is resampled on load.
    big = build_anchor('deit3_small_patch16_224',
                       **dict(kwargs, img_size=64))
    timm_path = str(tmp_path / 'model.safetensors')
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in big.state_dict().items()},
              timm_path)
    resized = build_anchor('deit3_small_patch16_224', timm_path, **kwargs)
    assert resized.pos_embed.shape == (1, 4, width)
    assert torch.equal(resized.blocks[0].attn.qkv.weight,
                       big.blocks[0].attn.qkv.weight)


def test_missing_or_wrong_anchor_files(tmp_path):
    missing = str(tmp_path / 'deit_3_large_224_21k.pth')
    with pytest.raises(FileNotFoundError, match='deit_3_large_224_21k.pth'
                       '.*facebookresearch/deit'):
        build_anchor('deit3_large_patch16_224', missing)
    small = build_anchor('deit3_small_patch16_224', img_size=IMG,
                         embed_dim=16, depth=2, num_heads=2)
    path = str(tmp_path / 'small.pth')
    torch.save(small.state_dict(), path)
    with pytest.raises(ValueError, match='does not fit the anchor'):
        build_anchor('deit3_small_patch16_224', path, img_size=IMG,
                     embed_dim=16, depth=3, num_heads=2)


def test_stitch_params_count_what_the_route_uses():
    model = build_ours('sl', 4, num_classes=CLASSES)
    small, large = (sum(p.numel() for p in a.parameters())
                    for a in model.anchors)
    assert model.stitch_params(0) == small
    assert model.stitch_params(1) == large
    sl = model.describe_stitch(2, input_shape=(IMG, IMG))
    assert 0 < sl['gflops'] < model.describe_stitch(
        1, input_shape=(IMG, IMG))['gflops']
    layer = model.stitch_layers[0][0]
    assert sl['route'] == 'S[0-0]→L[2-23]' and sl['kind'] == 'SL'
    blocks_s = sum(p.numel() for p in model.anchors[0].blocks[0].parameters())
    blocks_l = sum(p.numel() for b in model.anchors[1].blocks[2:]
                   for p in b.parameters())
    embed = small - sum(p.numel() for p in model.anchors[0].blocks.parameters()
                        ) - sum(p.numel() for n, p in
                                model.anchors[0].named_parameters()
                                if n.startswith(('norm.', 'head.')))
    head_l = sum(p.numel() for n, p in model.anchors[1].named_parameters()
                 if n.startswith(('norm.', 'head.')))
    assert sl['params'] == embed + blocks_s + blocks_l + head_l + sum(
        p.numel() for p in layer.parameters())
    assert math.isclose(model.stitch_params(12) - model.stitch_params(2),
                        -sum(p.numel() for b in model.anchors[1].blocks[2:22]
                             for p in b.parameters()) +
                        sum(p.numel() for b in model.anchors[0].blocks[1:11]
                            for p in b.parameters()))


def test_converter_tool_writes_a_loadable_checkpoint(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from .conftest import CONFIGS, run_tool
    config = tmp_path / 'narrow_s_l.py'
    anchors = [
        dict(model_name=TIMM[k], img_size=IMG, embed_dim=NARROW[k][0],
             depth=NARROW[k][1], num_heads=NARROW[k][2]) for k in 'sl'
    ]
    base = osp.join(CONFIGS, '..', '..', 'configs', 'cls',
                    'snnetv2_deit3-s-l_in1k.py')
    config.write_text(
        f"_base_ = [{base!r}]\n"
        f"model = dict(backbone=dict(anchors={anchors!r}, lora_rank=4, "
        f"num_classes={CLASSES}))\n")
    src = str(tmp_path / 'snnetv2_deit3_s_l.pth')
    checkpoint = official_checkpoint('sl', 4)
    torch.save(checkpoint, src)
    dst = str(tmp_path / 'converted.pth')
    run_tool('tools/model_converters/snnetv2_to_flexvit.py', str(config),
             src, dst)
    cfg = Config.fromfile(str(config))
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model).eval()
    state = torch.load(dst, map_location='cpu')['state_dict']
    model.load_state_dict(state, strict=True)
    model.backbone.set_stitch(25)
    images = torch.randn(1, 3, IMG, IMG)
    configs = json.load(open(OFFICIAL))['12/24']['configs']
    with torch.no_grad():
        torch.testing.assert_close(
            model(images, mode='tensor'),
            ref_forward(checkpoint, configs[25], images, [2, 2], 4),
            rtol=1e-4, atol=1e-5)
    # Other rank: refused, naming both, and nothing written.
    torch.save(official_checkpoint('sl', 3), src)
    proc = run_tool('tools/model_converters/snnetv2_to_flexvit.py',
                    str(config), src, str(tmp_path / 'other.pth'),
                    expect_ok=False)
    assert proc.returncode == 2 and 'LoRA rank 3' in proc.stderr
    assert not osp.exists(tmp_path / 'other.pth')
