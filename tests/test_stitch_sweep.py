"""The stitch sweep: several stitches evaluated in one pass over the test
set, on a real mmengine Runner with an mmpretrain ImageClassifier whose
backbone is a toy stitched network (tests/helpers/toy_stitched.py)."""
import copy
import csv
import json
import os.path as osp
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from flexvit_mm.engine import StitchSweepTestLoop, write_stitch_report
from flexvit_mm.engine.stitch_sweep import choose_primary_metric, pareto_front
from flexvit_mm.models.stitching import (find_stitched_backbone,
                                         parse_stitch_ids, set_stitch)
from tests.conftest import CONFIGS, data_root_options, latest_metrics
from tests.helpers import toy_stitched
from tests.helpers.toy_stitched import ToyModelWrapper, ToyStitchedBackbone

NUM_VAL = 8  # 2 per class x 4 classes

CONFIG = """
_base_ = [{base!r}]
custom_imports = dict(
    imports=['flexvit_mm', 'flexvit_mm.engine', 'tests.helpers.toy_stitched'],
    allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='ToyStitchedBackbone', channels=8,
                  num_blocks=3),
    head=dict(num_classes=4, in_channels=8, topk=(1, )))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CountReads'),
    dict(type='ResizeEdge', scale=40, edge='short'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=3, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=test_pipeline))
test_evaluator = [dict(type='Accuracy', topk=(1, )),
                  dict(type='ScoreChecksum')]
test_cfg = dict(type='StitchSweepTestLoop', stitch_ids='all')
"""


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    from flexvit_mm.datasets.synthetic import make_synthetic
    out = str(tmp_path_factory.mktemp('imagenet_sweep'))
    return make_synthetic('imagenet', out, num_train=2, num_val=2,
                          num_classes=4, img_size=(32, 32))


@pytest.fixture(scope='module')
def sweep_cfg(tmp_path_factory, data_root):
    folder = tmp_path_factory.mktemp('sweep_cfg')
    path = folder / 'cls_toy_sweep.py'
    path.write_text(CONFIG.format(base=osp.join(CONFIGS, 'cls_imagenet.py')))
    cfg = Config.fromfile(str(path))
    cfg.merge_from_dict(
        dict(o.split('=', 1) for o in data_root_options(data_root)))
    return cfg


def _runner(cfg, work_dir, **changes):
    cfg = copy.deepcopy(cfg)
    for key, value in changes.items():  # replaced, not merged
        cfg[key] = value
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'sweep_{uuid.uuid4().hex[:8]}'
    return Runner.from_cfg(cfg)


def test_sweep_matches_single_stitch_runs(sweep_cfg, tmp_path):
    runner = _runner(sweep_cfg, tmp_path / 'sweep')
    assert isinstance(runner.model.backbone, ToyStitchedBackbone)
    set_stitch(runner.model, 1)  # the sweep must restore it
    toy_stitched.READS.clear()
    results = runner.test()
    assert isinstance(runner.test_loop, StitchSweepTestLoop)

    # one metric set per stitch, every batch read once
    assert sorted(results) == [0, 1, 2, 3]
    assert len(toy_stitched.READS) == NUM_VAL
    assert set(toy_stitched.READS.values()) == {1}
    assert runner.model.backbone.stitch_id == 1
    loop = runner.test_loop
    assert len({id(e) for e in loop.evaluators.values()}) == 4
    assert len({id(m) for e in loop.evaluators.values()
                for m in e.metrics}) == 8
    for metrics in results.values():
        assert metrics['check/num_samples'] == NUM_VAL
        assert (metrics['check/first_idx'], metrics['check/last_idx']) == (
            0, NUM_VAL - 1)
    # the stitches really differ
    assert len({m['check/checksum'] for m in results.values()}) == 4

    # hooks got the flattened metrics: the test log json holds them
    logged = latest_metrics(str(tmp_path / 'sweep'))
    for stitch_id in range(4):
        assert logged[f'stitch_{stitch_id}/check/checksum'] == pytest.approx(
            results[stitch_id]['check/checksum'])

    # the report, written into the work dir
    with open(tmp_path / 'sweep' / 'stitches.json') as f:
        rows = json.load(f)
    assert [r['id'] for r in rows] == [0, 1, 2, 3]
    assert [r['route'] for r in rows] == [f'T[0-{i}]' for i in range(4)]
    for row in rows:
        assert row['accuracy/top1'] == pytest.approx(
            results[row['id']]['accuracy/top1'])
        assert row['params'] == runner.model.backbone.describe_stitch(
            row['id'])['params']
        assert row['gflops'] is None
    with open(tmp_path / 'sweep' / 'stitches.csv') as f:
        table = list(csv.DictReader(f))
    assert [int(r['id']) for r in table] == [0, 1, 2, 3]
    assert 'check/checksum' in table[0]
    with open(tmp_path / 'sweep' / 'stitches_pareto.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'

    # each stitch alone, with mmengine's plain TestLoop: identical metrics
    ckpt = str(tmp_path / 'weights.pth')
    torch.save(dict(state_dict=runner.model.state_dict()), ckpt)
    for stitch_id in (0, 1, 2, 3):
        single = _runner(sweep_cfg, tmp_path / f'single{stitch_id}',
                         test_cfg=dict(type='TestLoop'), load_from=ckpt)
        set_stitch(single.model, stitch_id)
        metrics = single.test()
        assert metrics == results[stitch_id], stitch_id

    # the same sweep through a (DDP-like) model wrapper, a subset of ids
    runner.model = ToyModelWrapper(runner.model)
    runner._test_loop = dict(type='StitchSweepTestLoop', stitch_ids='3,1',
                             report=False)
    toy_stitched.READS.clear()
    subset = runner.test()
    assert sorted(subset) == [1, 3]
    assert set(toy_stitched.READS.values()) == {1}
    for stitch_id in (1, 3):
        assert subset[stitch_id] == results[stitch_id]


def test_sweep_with_tta(sweep_cfg, tmp_path):
    from flexvit_mm.cli.toolbox_options import enable_tta
    cfg = copy.deepcopy(sweep_cfg)
    enable_tta(cfg, 'mmpretrain')
    runner = _runner(cfg, tmp_path / 'tta',
                     test_cfg=dict(type='StitchSweepTestLoop',
                                   stitch_ids=[0, 2], report=False))
    toy_stitched.READS.clear()
    results = runner.test()
    assert sorted(results) == [0, 2]
    assert set(toy_stitched.READS.values()) == {1}
    assert len(toy_stitched.READS) == NUM_VAL
    ckpt = str(tmp_path / 'weights.pth')
    torch.save(dict(state_dict=runner.model.module.state_dict()), ckpt)
    single = _runner(cfg, tmp_path / 'tta_single',
                     test_cfg=dict(type='TestLoop'), load_from=ckpt)
    set_stitch(single.model, 2)
    assert single.test() == results[2]


def test_set_stitch_through_wrappers():
    from mmpretrain.models import AverageClsScoreTTA, ImageClassifier
    model = ImageClassifier(
        backbone=dict(type='ToyStitchedBackbone'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=4, in_channels=8))
    backbone = model.backbone
    assert find_stitched_backbone(model) is backbone
    assert set_stitch(model, 2) is backbone and backbone.stitch_id == 2

    wrapped = ToyModelWrapper(AverageClsScoreTTA(module=model))
    assert find_stitched_backbone(wrapped) is backbone
    set_stitch(wrapped, 0)
    assert backbone.stitch_id == 0
    # numpy ids are fine
    import numpy as np
    set_stitch(ToyModelWrapper(model), np.int64(3))
    assert backbone.stitch_id == 3 and type(backbone.stitch_id) is int

    # a backbone found deeper than .backbone, and the backbone itself
    holder = torch.nn.Sequential(torch.nn.Identity(), ToyStitchedBackbone())
    assert find_stitched_backbone(holder) is holder[1]
    assert find_stitched_backbone(backbone) is backbone

    with pytest.raises(ValueError, match=r'Unknown stitch id 7.*valid ids '
                       r'are 0-3'):
        set_stitch(wrapped, 7)
    with pytest.raises(ValueError, match='valid ids are 0-3'):
        set_stitch(model, True)
    assert backbone.stitch_id == 3
    with pytest.raises(TypeError, match=r'^Sequential has no stitched '
                       r'backbone; set_stitch works on models whose backbone '
                       r'is SNNetv2'):
        set_stitch(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)), 0)
    with pytest.raises(TypeError, match=r'ToyModelWrapper\(Linear\) has no '
                       'stitched backbone'):
        find_stitched_backbone(ToyModelWrapper(torch.nn.Linear(2, 2)))


def test_set_stitch_through_real_ddp():
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel

    from tests.conftest import free_port
    # Use an existing group if one is up, else a one-process gloo group.
    own_group = not dist.is_initialized()
    if own_group:
        dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:'
                                f'{free_port()}', rank=0, world_size=1)
    try:
        holder = torch.nn.Module()
        holder.backbone = ToyStitchedBackbone()
        ddp = MMDistributedDataParallel(module=holder)
        assert set_stitch(ddp, 1) is holder.backbone
        assert holder.backbone.stitch_id == 1
        with pytest.raises(ValueError, match='valid ids are 0-3'):
            set_stitch(ddp, 4)
    finally:
        if own_group:
            dist.destroy_process_group()


@pytest.mark.parametrize('spec, expected', [
    ('all', [0, 1, 2, 3, 5, 6]),
    (' ALL ', [0, 1, 2, 3, 5, 6]),
    ('3', [3]),
    (3, [3]),
    ('1,3', [1, 3]),
    ('0-2', [0, 1, 2]),
    ('3,1,3, 1', [1, 3]),
    ('2-6', [2, 3, 5, 6]),  # a range keeps the valid ids inside it
    ('6,0-1,1', [0, 1, 6]),
    ([5, '1,2', 2], [1, 2, 5]),
])
def test_parse_stitch_ids(spec, expected):
    assert parse_stitch_ids(spec, (0, 1, 2, 3, 5, 6)) == expected


@pytest.mark.parametrize('spec, message', [
    ('4', r'Unknown stitch id 4; valid ids are 0-3, 5-6'),
    ('1,4,9', r'Unknown stitch ids 4, 9; valid ids are 0-3, 5-6'),
    (7, r'Unknown stitch id 7'),
    ('x', r"Cannot read stitch id 'x'.*Valid ids are 0-3, 5-6"),
    ('3-1', r'start > end'),
    ('7-9', r'holds no valid id'),
    ('', r'No stitch id'),
    (None, r'Cannot read stitch ids None'),
    (True, r'Cannot read'),
    (1.5, r'Cannot read'),
])
def test_parse_stitch_ids_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_stitch_ids(spec, (0, 1, 2, 3, 5, 6))


def test_report_pareto_and_primary_metric(tmp_path):
    describe = {i: dict(route=f'R{i}', kind='SL') for i in range(5)}
    flops = {0: 1e9, 1: 2e9, 2: 3e9, 3: 4e9, 4: 2.5e9}
    # higher is better: 2 is dominated by 4 (cheaper, better)
    results = {i: {'mIoU': v, 'mAcc': 1.0, 'aAcc': 0.5}
               for i, v in enumerate([10.0, 20.0, 25.0, 40.0, 30.0])}
    rows = write_stitch_report(results, str(tmp_path / 'seg'), describe,
                               flops=flops, params={i: 1e6 * (i + 1)
                                                    for i in range(5)})
    assert [r['id'] for r in rows if r['pareto']] == [0, 1, 3, 4]
    assert rows[2]['gflops'] == pytest.approx(3.0)
    assert rows[2]['params'] == 3000000
    for name in ('stitches.json', 'stitches.csv', 'stitches_pareto.png'):
        assert osp.getsize(tmp_path / 'seg' / name) > 0

    # lower is better (depth): rmse preferred, frontier reversed
    results = {i: {'d1': 0.9, 'rmse': v, 'abs_rel': 0.1}
               for i, v in enumerate([0.9, 0.8, 0.85, 0.5, 0.6])}
    table = {i: dict(flops=f, params=7) for i, f in flops.items()}
    rows = write_stitch_report(results, str(tmp_path / 'depth'), describe,
                               flops=table)
    assert [r['id'] for r in rows if r['pareto']] == [0, 1, 3, 4]
    assert rows[0]['params'] == 7

    # explicit primary metric, unknown FLOPs: no frontier, still a plot
    rows = write_stitch_report(results, str(tmp_path / 'noflops'), describe,
                               primary_metric='d1')
    assert not any(r['pareto'] for r in rows)
    assert all(r['gflops'] is None for r in rows)
    assert osp.getsize(tmp_path / 'noflops' / 'stitches_pareto.png') > 0
    with pytest.raises(ValueError, match='not a metric'):
        write_stitch_report(results, str(tmp_path / 'x'), None,
                            primary_metric='mIoU')

    assert choose_primary_metric(['coco/bbox_mAP_50', 'coco/bbox_mAP']) == \
        'coco/bbox_mAP'
    assert choose_primary_metric(['val/mIoU', 'aAcc']) == 'val/mIoU'
    assert choose_primary_metric(['foo', 'bar']) == 'foo'
    assert pareto_front([('a', 1, 1), ('b', 1, 2), ('c', 2, 2)]) == ['b']


def test_plot_shows_each_tasks_metrics():
    from flexvit_mm.engine.stitch_sweep import plot_metrics
    assert plot_metrics(['d1', 'abs_rel', 'rmse'], 'rmse') == ['rmse', 'd1']
    assert plot_metrics(['coco/bbox_mAP', 'coco/segm_mAP',
                         'coco/bbox_mAP_50'], 'coco/bbox_mAP') == [
                             'coco/bbox_mAP', 'coco/segm_mAP']
    assert plot_metrics(['aAcc', 'mIoU'], 'mIoU') == ['mIoU']
    assert plot_metrics(['coco/bbox_mAP'], 'coco/bbox_mAP') == [
        'coco/bbox_mAP']


def test_a_new_report_keeps_the_earlier_one(tmp_path):
    write_stitch_report({0: dict(acc=1.0), 1: dict(acc=2.0)}, str(tmp_path),
                        None)
    with open(tmp_path / 'stitches.json') as f:
        earlier = f.read()
    write_stitch_report({1: dict(acc=3.0)}, str(tmp_path), None)
    kept = sorted(p.name for p in tmp_path.glob('stitches_2*'))
    assert [osp.splitext(n)[1] for n in kept] == ['.csv', '.json', '.png']
    json_name = next(n for n in kept if n.endswith('.json'))
    assert (tmp_path / json_name).read_text() == earlier
    with open(tmp_path / 'stitches.json') as f:
        assert [r['id'] for r in json.load(f)] == [1]
    write_stitch_report({2: dict(acc=4.0)}, str(tmp_path), None)
    assert len(list(tmp_path.glob('stitches_2*.json'))) == 2
