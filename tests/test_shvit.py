"""SHViT backbone, SHViTClsHead and the checkpoint converter: parity with
timm's ``shvit_s1..s4`` (and an official-layout checkpoint written from it),
fusion, feature shapes, freezing and bad input."""
import re

import pytest
import timm.models.shvit as timm_shvit
import torch
import torch.nn as nn

import flexvit_mm  # noqa: F401
from flexvit_mm.analysis.benchmark import randomise_norms
from flexvit_mm.cli import UserInputError
from flexvit_mm.cli.convert_shvit import convert_file
from flexvit_mm.models import SHViT
from flexvit_mm.models.backbones.shvit_convert import (
    IncompatibleSHViTCheckpointError, convert_shvit, detect_layout)
from flexvit_mm.models.heads import SHViTClsHead


ARCHS = ['s1', 's2', 's3', 's4']


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def randomise(model, seed=0):
    """Random BN running stats and affine, random GroupNorm affine."""
    randomise_norms(model, seed)
    return model


def timm_model(arch):
    torch.manual_seed(ARCHS.index(arch))
    return randomise(getattr(timm_shvit, f'shvit_{arch}')().eval())


def ours_from(state, arch):
    backbone = SHViT(arch).eval()
    head = SHViTClsHead(1000, backbone.arch_settings['embed_dims'][-1]).eval()
    missing = backbone.load_state_dict(
        {k[9:]: v for k, v in state.items() if k.startswith('backbone.')},
        strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    head.load_state_dict(
        {k[5:]: v for k, v in state.items() if k.startswith('head.')},
        strict=True)
    return backbone, head


def timm_to_official(state):
    """The official key layout (reference section 1.8), written here by
    inverting timm's stage restructuring."""
    down = {'0.m': '0.0.m', '1.m': '0.1.m', '2': '1', '3.m': '2.0.m',
            '4.m': '2.1.m'}
    out = {}
    for key, value in state.items():
        match = re.match(r'stages\.(\d)\.blocks\.(\d+)\.(.*)', key)
        if match:
            stage, block = int(match[1]), int(match[2])
            offset = 0 if stage == 0 else 3
            key = f'blocks{stage + 1}.{block + offset}.{match[3]}'
        match = re.match(r'stages\.(\d)\.downsample\.(\d)\.(m\.)?(.*)', key)
        if match:
            inner = down[match[2] + ('.m' if match[3] else '')]
            key = f'blocks{int(match[1]) + 1}.{inner}.{match[4]}'
        out[key] = value
    return out


@pytest.mark.parametrize('arch', ARCHS)
def test_timm_and_official_parity_and_fusion(arch):
    timm_net = timm_model(arch)
    timm_state = timm_net.state_dict()
    assert detect_layout(timm_state) == 'timm'
    state = convert_shvit(timm_state, arch)
    # the mapping is a bijection onto our keys (strict loading both ways)
    assert len(state) == len(timm_state)
    backbone, head = ours_from(state, arch)
    assert set(state) == {'backbone.' + k for k in backbone.state_dict()} | {
        'head.' + k for k in head.state_dict()}

    official = dict(model=timm_to_official(timm_state))
    assert detect_layout(official['model']) == 'official'
    assert any(k.startswith('blocks2.1.se.fc1') for k in official['model'])
    official_state = convert_shvit(official, arch)
    assert set(official_state) == set(state)
    for key in state:
        assert torch.equal(official_state[key], state[key]), key

    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ref = timm_net(x)
        feats = backbone(x)
        logits = head(feats)
        assert rel_err(logits, ref) < 1e-5
        backbone.switch_to_deploy()
        head.switch_to_deploy()
        fused_feats = backbone(x)
        assert rel_err(fused_feats[-1], feats[-1]) < 1e-5
        assert rel_err(head(fused_feats), logits) < 1e-5
    # fused: no BatchNorm left, the head is a single Linear
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        for m in backbone.modules())
    assert head.bn is None and isinstance(head.fc, nn.Linear)
    with pytest.raises(RuntimeError, match='already fused'):
        backbone.switch_to_deploy()
    with pytest.raises(RuntimeError, match='already fused'):
        head.switch_to_deploy()

    # a fused state dict loads into a model built with deploy=True
    deployed = SHViT(arch, deploy=True).eval()
    deployed.load_state_dict(backbone.state_dict(), strict=True)
    with torch.no_grad():
        assert rel_err(deployed(x)[-1], fused_feats[-1]) < 1e-6


@pytest.mark.parametrize('size,expected', [
    ((224, 224), [(56, 56), (28, 28), (14, 14), (7, 7), (4, 4)]),
    ((256, 256), [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]),
    ((512, 512), [(128, 128), (64, 64), (32, 32), (16, 16), (8, 8)]),
    # each stride-2 conv (3x3, padding 1) gives ceil(size / 2)
    ((800, 1333), [(200, 334), (100, 167), (50, 84), (25, 42), (13, 21)]),
])
def test_feature_shapes(size, expected):
    dims = SHViT.arch_zoo['s1']['embed_dims']
    channels = [dims[0] // 4, dims[0] // 2] + dims
    strides = [4, 8, 16, 32, 64]
    model = SHViT('s1', out_indices=(0, 1, 2), with_stem_features=True)
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert [o.shape[1] for o in outs] == channels
    assert model.out_strides == strides and model.out_channels == channels
    # every out_indices choice, with and without the stem levels, from the
    # same forward computation
    for indices in [(0, ), (1, ), (2, ), (0, 1), (1, 2), (0, 2), (-1, )]:
        for stem in (False, True):
            sub = SHViT('s1', out_indices=indices, with_stem_features=stem)
            sub.load_state_dict(model.state_dict())
            sub.eval()
            norm = sorted(i % 3 for i in indices)
            pick = ([0, 1] if stem else []) + [i + 2 for i in norm]
            assert sub.out_strides == [strides[p] for p in pick]
            if size == (224, 224):
                with torch.no_grad():
                    sub_outs = sub(torch.zeros(1, 3, *size))
                assert [tuple(o.shape[2:]) for o in sub_outs] == \
                    [expected[p] for p in pick]


def test_bad_input():
    with pytest.raises(ValueError, match=r"Unknown SHViT arch 's5'.*'s1'"):
        SHViT('s5')
    with pytest.raises(ValueError, match='missing keys'):
        SHViT(dict(embed_dims=[64, 96, 128], depths=[1, 1, 1]))
    with pytest.raises(ValueError, match="types\\[1\\]"):
        SHViT(dict(embed_dims=[64, 96, 128], depths=[1, 1, 1],
                   partial_dims=[16, 16, 16], types=['i', 'x', 's']))
    with pytest.raises(ValueError, match=r'out_indices \(0, 3\) has 3'):
        SHViT('s1', out_indices=(0, 3))
    with pytest.raises(ValueError, match='out_indices'):
        SHViT('s1', out_indices=-4)
    with pytest.raises(ValueError, match='frozen_stages'):
        SHViT('s1', frozen_stages=4)
    s3_state = SHViT('s3').state_dict()
    with pytest.raises(IncompatibleSHViTCheckpointError,
                       match=r'checkpoint is SHViT-S3 \(dims 192/352/448.*'
                       r'config is SHViT-S4 \(dims 224/336/448'):
        convert_shvit(s3_state, 's4', dense=True)
    with pytest.raises(IncompatibleSHViTCheckpointError, match='classifier'):
        convert_shvit(s3_state, 's3')
    with pytest.raises(IncompatibleSHViTCheckpointError,
                       match='Not an SHViT checkpoint'):
        convert_shvit({'foo.weight': torch.zeros(1)}, 's1')


def test_custom_arch_and_pretrained_init(tmp_path):
    arch = dict(embed_dims=[64, 96, 128], depths=[1, 2, 1],
                partial_dims=[16, 24, 32], types=['i', 's', 's'])
    source = randomise(SHViT(arch, out_indices=(0, 1, 2))).eval()
    ckpt = tmp_path / 'dense.pth'
    torch.save(dict(state_dict={'backbone.' + k: v
                                for k, v in source.state_dict().items()}),
               ckpt)
    model = SHViT(arch, out_indices=(0, 1, 2),
                  init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    model.init_weights()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), source(x)):
            assert torch.equal(a, b)


def test_frozen_stages_and_norm_eval():
    model = SHViT('s1', frozen_stages=2, norm_eval=False)
    model.train()
    frozen = [model.stem, model.stages[0], model.stages[1]]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    assert model.stages[2].training
    assert all(p.requires_grad for p in model.stages[2].parameters())

    model = SHViT('s1', norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not bn.training for bn in bns)
    assert model.stages[2].blocks[0].attn.norm.training
    assert all(p.requires_grad for p in model.parameters())
    before = bns[0].running_mean.clone()
    out = model(torch.randn(2, 3, 64, 64))[-1]
    out.mean().backward()  # the in-place residual adds are autograd-safe
    assert torch.equal(before, bns[0].running_mean)
    assert model.stem[0].conv.weight.grad is not None


def test_converter_tool(tmp_path):
    timm_net = timm_model('s1')
    src = tmp_path / 'shvit_s1.pth'
    torch.save(dict(model=timm_to_official(timm_net.state_dict())), src)
    dst = tmp_path / 'out.pth'
    state = convert_file(str(src), str(dst), 's1')
    assert any(k.startswith('head.') for k in state)
    with pytest.raises(UserInputError, match='exists'):
        convert_file(str(src), str(dst), 's1')
    dense = convert_file(str(src), str(dst), 's1', dense=True, force=True)
    assert all(k.startswith('backbone.') for k in dense)
    with pytest.raises(UserInputError, match='SHViT-S1.*SHViT-S2'):
        convert_file(str(src), str(tmp_path / 'x.pth'), 's2')
    # the dense output initialises a backbone through init_cfg
    model = SHViT('s1', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert rel_err(model(x)[-1], timm_net.forward_features(x)) < 1e-5
