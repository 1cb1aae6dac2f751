"""Layer-wise lr decay for SN-Netv2:
StitchedLayerDecayOptimWrapperConstructor.

A tiny stitched backbone (anchor depths 3 and 6) inside a segmentor-like
module; every expected learning rate is computed by hand from the rule
``lr * rate ** (d_a + 1 - t)`` with per-anchor depths, and the geometric
mean for stitching layers.
"""
import math

import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import flexvit_mm  # noqa: F401  (registers the constructor)
from flexvit_mm.engine.optimizers import \
    StitchedLayerDecayOptimWrapperConstructor
from flexvit_mm.models import SNNetv2

LR, WD = 1e-3, 0.05
NAME = 'StitchedLayerDecayOptimWrapperConstructor'


class TinySegmentor(nn.Module):
    """``backbone`` + ``decode_head``, as mmseg's EncoderDecoder."""

    def __init__(self):
        super().__init__()
        self.backbone = SNNetv2(
            anchors=[
                dict(model_name='deit3_small_patch16_224', img_size=32,
                     patch_size=8, embed_dim=32, depth=3, num_heads=2),
                dict(model_name='deit3_base_patch16_224', img_size=32,
                     patch_size=8, embed_dim=48, depth=6, num_heads=2)
            ],
            lora_rank=4,
            out_indices=(5, ))
        self.decode_head = nn.Conv2d(48, 3, 1)

    def forward(self, x):
        return self.decode_head(self.backbone(x)[0])


def cfg(**paramwise):
    paramwise.setdefault('decay_rate', 0.5)
    return dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
        constructor=NAME,
        paramwise_cfg=paramwise)


def group_of(optim_wrapper, model):
    """{parameter name: its param group}."""
    by_id = {id(p): g for g in optim_wrapper.optimizer.param_groups
             for p in g['params']}
    return {n: by_id.get(id(p)) for n, p in model.named_parameters()}


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return TinySegmentor()


def test_learning_rates_by_hand(model):
    fits = {(f.front, f.layer): (f.source_block, f.target_block)
            for f in model.backbone.space.layer_fits()}
    # The hand computations below rely on these joins.
    assert fits[(0, 0)] == (0, 1)  # S block 0 -> resumes at L block 2
    assert fits[(1, 1)] == (3, 1)  # L block 3 -> resumes at S block 2
    assert fits[(0, 2)] == (2, 5)  # last S block -> past L's last block

    groups = group_of(build_optim_wrapper(model, cfg()), model)
    lr = {n: g['lr'] for n, g in groups.items() if g is not None}
    b = 'backbone.'
    expected = {
        # d_S = 3: block 0 is depth 1 -> 0.5 ** 3
        b + 'anchors.0.blocks.0.attn.qkv.weight': LR * 0.5**3,
        b + 'anchors.0.blocks.2.mlp.fc2.bias': LR * 0.5**1,
        # d_L = 6: block 5 is depth 6 -> 0.5 ** 1
        b + 'anchors.1.blocks.5.mlp.fc1.weight': LR * 0.5**1,
        b + 'anchors.1.blocks.0.ls1.gamma': LR * 0.5**6,
        # embeddings: depth 0
        b + 'anchors.0.patch_embed.proj.weight': LR * 0.5**4,
        b + 'anchors.0.cls_token': LR * 0.5**4,
        b + 'anchors.1.pos_embed': LR * 0.5**7,
        # S->L 0: S block 0 (0.5**3) and L block 2 (depth 3: 0.5**4)
        b + 'stitch_layers.0.0.lora_A': LR * math.sqrt(0.5**3 * 0.5**4),
        # L->S 1: L block 3 (depth 4: 0.5**3) and S block 2 (0.5**1)
        b + 'stitch_layers.1.1.lora_A': LR * math.sqrt(0.5**3 * 0.5**1),
        # S->L 2 feeds the output: S block 2 (0.5) and scale 1
        b + 'stitch_layers.0.2.lora_B': LR * math.sqrt(0.5),
        'decode_head.weight': LR,
        'decode_head.bias': LR,
    }
    for name, value in expected.items():
        assert lr[name] == pytest.approx(value, rel=1e-9), name
        assert groups[name]['lr_scale'] == pytest.approx(value / LR), name
    assert 'S.block0' in groups[b + 'anchors.0.blocks.0.attn.qkv.weight'][
        'layer']
    assert 'SL.0' in groups[b + 'stitch_layers.0.0.lora_A']['layer']
    assert 'LS.1' in groups[b + 'stitch_layers.1.1.lora_A']['layer']


def test_weight_decay_and_grouping(model):
    optim_wrapper = build_optim_wrapper(model, cfg())
    param_groups = optim_wrapper.optimizer.param_groups
    groups = group_of(optim_wrapper, model)
    b = 'backbone.'
    no_decay = [
        b + 'anchors.0.blocks.0.attn.qkv.bias',
        b + 'anchors.1.blocks.3.norm1.weight',
        b + 'anchors.1.blocks.3.ls2.gamma',
        b + 'anchors.0.pos_embed', b + 'anchors.1.cls_token',
        b + 'anchors.0.patch_embed.proj.bias',
        b + 'stitch_layers.1.0.bias', 'decode_head.bias'
    ]
    decay = [
        b + 'anchors.0.blocks.0.attn.qkv.weight',
        b + 'anchors.1.patch_embed.proj.weight',
        b + 'stitch_layers.0.1.lora_A', b + 'stitch_layers.1.0.lora_B',
        'decode_head.weight'
    ]
    for name in no_decay:
        assert groups[name]['weight_decay'] == 0, name
    for name in decay:
        assert groups[name]['weight_decay'] == pytest.approx(WD), name

    # Every trainable parameter in exactly one group; frozen W0 in none.
    seen = [id(p) for g in param_groups for p in g['params']]
    assert len(seen) == len(set(seen))
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert groups[name] is not None, name
        else:
            assert name.endswith('.weight') and 'stitch_layers' in name
            assert groups[name] is None, name
    assert sum(not p.requires_grad for p in model.parameters()) == 5

    # Groups are unique per (lr, weight decay) and far fewer than tensors.
    keys = [(g['lr'], g['weight_decay']) for g in param_groups]
    assert len(keys) == len(set(keys))
    assert len(param_groups) < len(seen) // 4
    # The runner logs the first group's lr: it is the base lr.
    assert param_groups[0]['lr'] == LR


def test_beit_style_blocks_are_not_decayed():
    from timm.models.beit import Block
    torch.manual_seed(0)
    model = TinySegmentor()
    model.backbone.anchors[1].blocks[5] = Block(
        48, 2, qkv_bias=True, init_values=0.1, window_size=(4, 4))
    groups = group_of(build_optim_wrapper(model, cfg()), model)
    p = 'backbone.anchors.1.blocks.5.'
    for name in ('gamma_1', 'gamma_2', 'attn.q_bias', 'attn.v_bias',
                 'attn.relative_position_bias_table'):
        assert groups[p + name]['weight_decay'] == 0, name
        assert groups[p + name]['lr'] == pytest.approx(LR * 0.5), name
    assert groups[p + 'attn.qkv.weight']['weight_decay'] == WD


def test_per_anchor_decay_rates(model):
    groups = group_of(
        build_optim_wrapper(model, cfg(decay_rate=[0.5, 0.8])), model)
    b = 'backbone.'
    assert groups[b + 'anchors.0.blocks.0.attn.qkv.weight']['lr'] == \
        pytest.approx(LR * 0.5**3)
    assert groups[b + 'anchors.1.blocks.5.mlp.fc1.weight']['lr'] == \
        pytest.approx(LR * 0.8)
    assert groups[b + 'anchors.1.patch_embed.proj.weight']['lr'] == \
        pytest.approx(LR * 0.8**7)
    # S->L 0: S block 0 at 0.5 ** 3, L block 2 (depth 3) at 0.8 ** 4
    assert groups[b + 'stitch_layers.0.0.lora_A']['lr'] == \
        pytest.approx(LR * math.sqrt(0.5**3 * 0.8**4))


def test_custom_keys_apply_on_top(model):
    optim_wrapper = build_optim_wrapper(
        model,
        cfg(custom_keys={
            'decode_head': dict(lr_mult=10.),
            'anchors.1.blocks.5': dict(lr_mult=2., decay_mult=0.5),
            # the longest matching key wins over 'anchors.1.blocks.5'
            'anchors.1.blocks.5.mlp': dict(lr_mult=3.),
        }))
    groups = group_of(optim_wrapper, model)
    b = 'backbone.anchors.1.blocks.5.'
    assert groups['decode_head.weight']['lr'] == pytest.approx(10 * LR)
    assert groups['decode_head.weight']['lr_scale'] == pytest.approx(10.)
    assert groups[b + 'attn.qkv.weight']['lr'] == pytest.approx(
        LR * 0.5 * 2)
    assert groups[b + 'attn.qkv.weight']['weight_decay'] == pytest.approx(
        WD * 0.5)
    # decay_mult scales the rule's decay: a bias stays undecayed
    assert groups[b + 'attn.qkv.bias']['weight_decay'] == 0
    assert groups[b + 'mlp.fc1.weight']['lr'] == pytest.approx(
        LR * 0.5 * 3)
    assert groups[b + 'mlp.fc1.weight']['weight_decay'] == pytest.approx(WD)
    # untouched parameters keep their layer-decay lr
    assert groups['backbone.anchors.0.blocks.0.attn.qkv.weight']['lr'] == \
        pytest.approx(LR * 0.5**3)


def test_found_from_mmseg_scope_and_wrapped_model(model):
    from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS
    assert OPTIM_WRAPPER_CONSTRUCTORS.get(NAME) is \
        StitchedLayerDecayOptimWrapperConstructor
    with DefaultScope.overwrite_default_scope('mmseg'):
        optim_wrapper = build_optim_wrapper(model, cfg())
    groups = group_of(optim_wrapper, model)
    assert groups['backbone.anchors.1.blocks.5.mlp.fc1.weight']['lr'] == \
        pytest.approx(LR * 0.5)

    class Wrapper(nn.Module):  # stands in for (MM)DistributedDataParallel

        def __init__(self, module):
            super().__init__()
            self.module = module

    wrapped = build_optim_wrapper(Wrapper(model), cfg())
    assert len(wrapped.optimizer.param_groups) == len(
        optim_wrapper.optimizer.param_groups)


def test_clear_errors(model):
    with pytest.raises(TypeError, match=NAME + '.*DefaultOptimWrapper'):
        build_optim_wrapper(nn.Sequential(nn.Linear(2, 2)), cfg())
    from tests.helpers.toy_stitched import ToyStitchedBackbone
    toy = nn.Module()
    toy.backbone = ToyStitchedBackbone()
    with pytest.raises(TypeError, match='anchors'):
        build_optim_wrapper(toy, cfg())
    for paramwise, message in (
            (dict(custom_keys={}), 'needs decay_rate'),
            (dict(decay_rate=0.65, num_layers=12), 'num_layers'),
            (dict(decay_rate=1.5), r'\(0, 1\]'),
            (dict(decay_rate=[0.5, 0.6, 0.7]), 'per anchor'),
            (dict(decay_rate=0.5, norm_decay_mult=0.5), 'norm_decay_mult'),
    ):
        with pytest.raises(ValueError, match=message):
            build_optim_wrapper(
                model,
                dict(optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
                     constructor=NAME, paramwise_cfg=paramwise))
    # mmengine's default configs often carry norm_decay_mult=0: implied.
    build_optim_wrapper(model, cfg(norm_decay_mult=0.))


def test_one_step_uses_the_scaled_lrs():
    torch.manual_seed(0)
    model = TinySegmentor().train()
    space = model.backbone.space
    # an SLS route: uses an S->L and an L->S stitching layer
    route = next(r for r in space if r.kind == 'SLS')
    model.backbone.set_train_stitch(route.id)
    optim_wrapper = build_optim_wrapper(model, cfg())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = model(torch.randn(2, 3, 32, 32)).square().mean()
    optim_wrapper.update_params(loss)
    params = dict(model.named_parameters())
    for (front, layer) in route.layers:
        name = f'backbone.stitch_layers.{front}.{layer}.'
        assert not torch.equal(params[name + 'lora_B'],
                               before[name + 'lora_B'])
        assert torch.equal(params[name + 'weight'], before[name + 'weight'])
    # AdamW's first step moves an undecayed element by about its lr
    # (|g| >> eps; the layer-scale gammas get large gradients at init).
    first = route.segments[0].anchor
    depth = len(model.backbone.anchors[first].blocks)
    run = {b for seg in route.segments if seg.anchor == first
           for b in range(seg.first, seg.last + 1)}
    assert run != set(range(depth))  # the check covers both cases
    for block in range(depth):
        name = f'backbone.anchors.{first}.blocks.{block}.ls2.gamma'
        step = (params[name] - before[name]).abs().max().item()
        if block in run:
            assert step == pytest.approx(LR * 0.5**(depth - block),
                                         rel=1e-3), name
        else:  # not on the route: no gradient, no step
            assert step == 0, name
