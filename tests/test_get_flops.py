"""tools/analysis/get_flops.py: the per-stitch table (GFLOPs, parameters,
latency) is compute_stitch_table's, also with latency; a model without a
stitched backbone gets one row; user errors exit 2."""
import csv
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from flexvit_mm.analysis import (compute_stitch_table, count_flops,
                                 stitch_table_key)
from flexvit_mm.cli import run
from flexvit_mm.cli.get_flops import main

from .conftest import CONFIGS, REPO, run_tool

CONFIG = osp.join(CONFIGS, 'cls_snnetv2_tiny.py')
SHVIT = osp.join(REPO, 'configs', 'cls', 'shvit-s1_in1k.py')


def _build(config):
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model).eval()


def test_stitch_table_is_compute_stitch_table(tmp_path):
    out = str(tmp_path / 'out')
    proc = run_tool('tools/analysis/get_flops.py', CONFIG, '--stitch-ids',
                    '0,3,8', '--warmup', '0', '--repeats', '1', '--out-dir',
                    out)
    assert 'latency(ms)' in proc.stdout and 'S[0-1]→L[4-5]' in proc.stdout
    with open(osp.join(out, 'stitch_table.json')) as f:
        document = json.load(f)
    backbone = _build(CONFIG).backbone
    # The default size is the sampler's and tools/test.py's (the hook has
    # no input_shape: the first anchor's img_size).
    assert document['input_shape'] == [48, 48]
    assert document['key'] == stitch_table_key(backbone, (48, 48))
    protocol = document['latency']
    assert (protocol['device'], protocol['batch_size'], protocol['threads'],
            protocol['shape']) == ('cpu', 1, 1, [48, 48])
    assert protocol['machine']['cpu_count'] >= 1
    expected = compute_stitch_table(backbone, (48, 48), [0, 3, 8],
                                    progress=False)
    assert sorted(document['table']) == ['0', '3', '8']
    for stitch_id, row in expected.items():
        got = document['table'][str(stitch_id)]
        assert got['flops'] == row['flops']
        assert got['gflops'] == pytest.approx(row['flops'] / 1e9)
        assert got['params'] == backbone.describe_stitch(stitch_id)['params']
        assert got['route'] == backbone.describe_stitch(stitch_id)['route']
        assert got['latency_ms'] > 0
    with open(osp.join(out, 'stitch_table.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['id'] for r in rows] == ['0', '3', '8']
    assert int(rows[1]['flops']) == expected[3]['flops']
    assert float(rows[1]['latency_ms']) > 0


def test_compute_stitch_table_with_latency_restores_the_backbone():
    backbone = _build(CONFIG).backbone
    backbone.set_stitch(5)
    backbone.train()
    threads = torch.get_num_threads()
    plain = compute_stitch_table(backbone, (48, 48), [0, 1], progress=False)
    timed = compute_stitch_table(backbone, (48, 48), [0, 1], latency=True,
                                 threads=threads + 1, warmup=0, repeats=2,
                                 progress=False)
    assert set(plain[0]) == {'flops', 'params'}
    for stitch_id in (0, 1):
        assert timed[stitch_id]['flops'] == plain[stitch_id]['flops']
        assert timed[stitch_id]['latency_ms'] > 0
    assert backbone.stitch_id == 5 and backbone.training
    assert torch.get_num_threads() == threads


def test_model_without_a_stitched_backbone_gets_one_row(tmp_path, capsys):
    document = main([SHVIT, '--warmup', '0', '--repeats', '1', '--out-dir',
                     str(tmp_path)])
    assert document['stitched'] is False and document['key'] is None
    assert document['input_shape'] == [224, 224]
    row = document['table']['backbone']
    backbone = _build(SHVIT).backbone
    assert row['id'] == 'SHViT' and row['latency_ms'] > 0
    assert row['flops'] == count_flops(backbone, torch.zeros(1, 3, 224, 224))
    assert row['params'] == sum(p.numel() for p in backbone.parameters())
    assert 'no stitched backbone: one row' in capsys.readouterr().out
    with open(tmp_path / 'stitch_table.csv') as f:
        assert len(f.read().strip().splitlines()) == 2


@pytest.mark.parametrize('argv, message', [
    (['configs/cls/no_such_config.py'], 'does not exist'),
    ([CONFIG, '--stitch-ids', '4'], 'valid ids are 0-3, 5-8'),
    ([CONFIG, '--device', 'cuda:7'], 'CUDA is not available'),
    ([SHVIT, '--stitch-ids', '0'], 'no stitched backbone'),
    ([CONFIG, '--shape', '64', '64'], 'takes 48x48 inputs only'),
])
def test_user_errors_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    # CUDA hidden, so the device check fails the same on any machine.
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit) as info:
        run(main, argv + ['--no-latency', '--out-dir', str(tmp_path)])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
