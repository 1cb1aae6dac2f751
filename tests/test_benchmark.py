"""The throughput benchmark (flexvit_mm.analysis.benchmark and its tool):
result structure, interleaving, fusing rules and user errors. Timings are
never asserted (the machine is shared); only that they are positive and
that the reported numbers are consistent with each other."""
import json
import os.path as osp
import statistics

import pytest
import torch
import torch.nn as nn

from flexvit_mm.analysis import benchmark as bm
from flexvit_mm.cli import run
from flexvit_mm.cli.benchmark import main

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

TINY_ARCH = dict(embed_dims=[16, 24, 32], depths=[1, 1, 1],
                 partial_dims=[4, 6, 8], types=['i', 's', 's'], qk_dim=4)

TINY_CONFIG = f"""
default_scope = 'mmpretrain'
custom_imports = dict(imports=['flexvit_mm'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(type='SHViT', arch={TINY_ARCH!r}),
    head=dict(type='SHViTClsHead', num_classes=5, in_channels=32))
"""

FAST = dict(warmup=1, repeats=2, progress=False)


def _check_summary(summary, batch_size, repeats):
    assert len(summary['times_s']) == repeats
    assert all(t > 0 for t in summary['times_s'])
    assert summary['median_s'] == statistics.median(summary['times_s'])
    assert summary['images_per_s'] == pytest.approx(
        batch_size / summary['median_s'])
    assert summary['min_s'] <= summary['median_s'] <= summary['max_s']


def test_config_model_fused_structure(tmp_path):
    """A config's model (custom_imports, default scope) is built, fused and
    timed; the JSON of the tool has the same structure."""
    config = tmp_path / 'tiny.py'
    config.write_text(TINY_CONFIG)
    model = bm.build_from_config(str(config))
    result = bm.benchmark_model(model, shape=(32, 32), batch_size=2,
                                fuse=True, name='tiny', **FAST)
    protocol = result['protocol']
    assert protocol['device'] == 'cpu' and protocol['threads'] == 1
    assert protocol['amp'] is False and protocol['batch_size'] == 2
    assert {'cpu', 'torch'} <= set(protocol['machine'])
    tiny = result['models']['tiny']
    _check_summary(tiny, 2, 2)
    # the backbone and the head each have switch_to_deploy
    assert tiny['fused'] == ['model.backbone', 'model.head']
    assert result['order'] == ['tiny', 'tiny']

    out = tmp_path / 'out.json'
    main([str(config), '--shape', '32', '32', '--batch-size', '2', '--fuse',
          '--warmup', '1', '--repeats', '2', '--no-progress', '--out',
          str(out)])
    saved = json.loads(out.read_text())
    assert set(saved) == {'protocol', 'models', 'order'}
    _check_summary(saved['models']['tiny.py'], 2, 2)


def test_compare_shvit_interleaved_and_ratios():
    """Ours vs timm: the same function, round-robin order, ratios of the
    medians. (The official model joins with a checkout path, which tests
    cannot have: tools/analysis/check_shvit_parity.py checks it locally.)"""
    official = None
    result = bm.compare_shvit(['shvit_s1'], official, shape=(32, 32),
                              batch_size=1, **FAST)
    assert result['protocol']['threads'] == 1
    s1 = result['variants']['s1']
    names = ['ours', 'timm'] + (['official'] if official else [])
    assert list(s1['models']) == names
    assert s1['order'] == names * 2
    for name in names:
        _check_summary(s1['models'][name], 1, 2)
    assert s1['models']['ours']['fuse'] == 'switch_to_deploy()'
    assert s1['models']['timm']['fuse'] == 'timm SHViT.fuse()'
    for other in names[1:]:
        assert s1['ratios'][f'ours/{other}'] == pytest.approx(
            s1['models']['ours']['images_per_s'] /
            s1['models'][other]['images_per_s'])
    # identical weights through the converters: the same function
    errors = {k: v for k, v in s1['max_rel_err'].items() if k != 'reference'}
    assert errors and max(errors.values()) < 1e-4
    for key, ratio in s1['paired_ratios'].items():
        assert ratio > 0 and key in s1['ratios']
    table = bm.format_compare_table(result)
    assert '| S1 | 32x32 |' in table and 'ours/timm' in table


def test_default_shvit_resolution():
    """The paper's input sizes: 224, S4 at 256."""
    assert bm.SHVIT_RESOLUTION == dict(s1=224, s2=224, s3=224, s4=256)
    assert bm.resolve_protocol('cpu') == dict(
        device='cpu', batch_size=16, threads=1, amp=False)


def test_fuse_refuses_training_mode():
    """Folding BN uses running statistics, which a training-mode model does
    not compute: refused rather than silently changing the function."""
    model = bm.build_shvit_classifier('s1').train()
    with pytest.raises(bm.BenchmarkError, match='eval'):
        bm.fuse_model(model)
    assert not model.backbone.deploy
    assert bm.fuse_model(nn.Linear(2, 2).eval()) == []


def test_amp_on_cpu_is_a_clear_error(capsys):
    with pytest.raises(bm.BenchmarkError, match='CUDA'):
        bm.resolve_protocol('cpu', amp=True)
    with pytest.raises(SystemExit) as exit_info:
        run(main, ['--backbone', 'shvit_s1', '--device', 'cpu', '--amp'])
    assert exit_info.value.code == 2
    assert '--amp' in capsys.readouterr().err


def test_cuda_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(bm.BenchmarkError, match='not available'):
        bm.resolve_protocol('cuda')


def test_unknown_variant_errors(capsys):
    with pytest.raises(bm.BenchmarkError, match='s1, s2, s3, s4'):
        bm.compare_shvit(['s5'], **FAST)
    with pytest.raises(SystemExit) as exit_info:
        run(main, ['--compare-shvit', 's1,xl', '--device', 'cpu'])
    assert exit_info.value.code == 2
    assert "'xl'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run(main, ['--backbone', 'resnet50', '--device', 'cpu'])
    assert exit_info.value.code == 2


def test_missing_config_and_bad_official_repo(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(main, [str(tmp_path / 'nope.py'), '--device', 'cpu'])
    assert exit_info.value.code == 2
    with pytest.raises(bm.BenchmarkError, match='ysj9909/SHViT'):
        bm.load_official_shvit(str(tmp_path))
