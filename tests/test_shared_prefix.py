"""Shared-prefix evaluation of many stitches, zero-overhead routing and
their benchmarks: the route tree, the cache, exactness against separate
forwards, the FLOPs prediction, the sweep loop and the benchmark tool."""
import copy
import json
import os.path as osp
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from flexvit_mm.analysis.stitch_benchmark import (compare_with_plain,
                                                  measure_shared_prefix_sweep,
                                                  plain_equivalent,
                                                  predict_shared_prefix_saving,
                                                  step_flops)
from flexvit_mm.analysis.stitch_table import compute_stitch_table
from flexvit_mm.models import SNNetv2
from flexvit_mm.models.stitching.prefix_tree import PrefixTree
from flexvit_mm.models.stitching.space import StitchingSpace
from tests.conftest import CONFIGS, data_root_options, run_tool

DEMO = 'configs/demo/snnetv2_tiny_600i_synthetic-imagenet.py'


def _narrow_s_l(dense=False, **kwargs):
    """DeiT3 S-L depths (12/24, all 134 stitches), narrow widths."""
    anchors = [
        dict(model_name='deit3_small_patch16_224', img_size=32,
             embed_dim=16, num_heads=2),
        dict(model_name='deit3_large_patch16_224', img_size=32,
             embed_dim=24, num_heads=2),
    ]
    if dense:
        kwargs.setdefault('out_indices', (3, 7, 7, 23))
    else:
        kwargs.setdefault('num_classes', 5)
    model = SNNetv2(anchors, lora_rank=2, **kwargs)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial stitching layers and LayerScale
        for name, param in model.named_parameters():
            if 'stitch_layers' in name or '.ls' in name:
                param.copy_(torch.randn(param.shape, generator=generator) *
                            0.1)
    return model.eval()


def test_prefix_tree_of_the_s_l_space_matches_a_hand_count():
    space = StitchingSpace((12, 24))

    def steps(route):  # the backbone's step form, without dense outputs
        out = [('embed', route.first_anchor)]
        for seg, layer in zip(route.segments, list(route.layers) + [None]):
            out += [('block', seg.anchor, b) for b in
                    range(seg.first, seg.last + 1)]
            if layer is not None:
                out.append(('layer', ) + layer)
        return out

    tree = PrefixTree({r.id: steps(r) for r in space})
    # Every distinct prefix is a node: S blocks 0..11 and L blocks 0..23
    # (anchors), every SL tail, every LS tail, ... counted by brute force.
    prefixes = {tuple(p[:t + 1]) for p in tree.paths.values()
                for t in range(len(p))}
    assert tree.num_nodes == len(prefixes)
    assert tree.total_cost(lambda s: 1) == sum(len(p) for p in
                                               tree.paths.values())
    order = tree.depth_first()
    assert sorted(order) == sorted(space.stitch_ids)
    # Depth-first: routes sharing a prefix are contiguous in the order.
    for prefix in prefixes:
        positions = [i for i, key in enumerate(order)
                     if tree.paths[key][:len(prefix)] == prefix]
        assert positions == list(range(positions[0], positions[-1] + 1))
    # Route 25 (L[0-1]->S[1-1]->L[4-23]) branches only after L block 1
    # (the L anchor goes on, the j=1 LS/LSL routes leave) and after S block 1
    # (its LSL cut; LS and the other LSL cuts go on). Its embedding, L block
    # 0 and the L->S layer have a single continuation: nothing kept there.
    branches = tree.branch_steps(25)
    assert [tree.paths[25][t] for t in branches] == [('block', 1, 1),
                                                     ('block', 0, 1)]


@pytest.mark.parametrize('dense', [False, True])
def test_shared_sweep_equals_separate_forwards_and_runs_each_prefix_once(
        dense):
    model = _narrow_s_l(dense=dense, output_cls_token=dense)
    generator = torch.Generator().manual_seed(1)
    crops = [torch.randn(2, 3, 32, 32, generator=generator)
             for _ in range(2)]
    with torch.no_grad():
        expected = {}
        for stitch_id in model.stitch_ids:
            model.set_stitch(stitch_id)
            expected[stitch_id] = [model(c) for c in crops] + [
                model(torch.flip(crops[0], dims=[3]))]
        ids = list(model.stitch_ids)
        with model.sharing_prefixes(ids) as cache:
            tree = cache.tree
            most_states = max(len(tree.branch_steps(i)) for i in ids)
            deepest = 0
            for stitch_id in cache.order:
                model.set_stitch(stitch_id)
                # Two crops and a flip made anew, as a sliding-window test
                # with flip augmentation would feed them.
                got = [model(c) for c in crops] + [
                    model(torch.flip(crops[0], dims=[3]))]
                for a, b in zip(got, expected[stitch_id]):
                    for x, y in zip(_flat(a), _flat(b)):
                        assert torch.equal(x, y), stitch_id
                deepest = max(deepest, *(len(s.states)
                                         for s in cache._stacks))
    # every distinct prefix ran exactly once per input, and memory stayed
    # at one route's branch points per input
    assert cache.steps_run == 3 * tree.num_nodes
    assert cache.steps_run + cache.steps_reused == 3 * sum(
        len(p) for p in tree.paths.values())
    assert deepest <= most_states


def _flat(outputs):
    for item in outputs:
        if isinstance(item, (list, tuple)):
            yield from _flat(item)
        else:
            yield item


def test_training_and_unlisted_stitches_bypass_the_cache():
    model = _narrow_s_l()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), model.sharing_prefixes([0, 2, 3]) as cache:
        model.set_stitch(5)  # not in the tree: computed from scratch
        model(x)
        model.train()
        model.set_train_stitch(2)
        model(x)
        assert cache.steps_run == 0 and cache._stacks == []
    assert model._prefix_cache is None


@pytest.mark.parametrize('dense', [False, True])
def test_route_step_flops_add_up_to_the_stitch_table(dense):
    model = _narrow_s_l(dense=dense)
    # every kind of route: anchors, SL, LS, LSL, SLS
    ids = [0, 1, 2, 12, 14, 24, 25, 60, 84, 85, 120, 134]
    table = compute_stitch_table(model, (32, 32), ids)
    cost, tail = step_flops(model, (32, 32))
    for stitch_id in ids:
        assert sum(cost(s) for s in model.route_steps(stitch_id)) + \
            tail(stitch_id) == table[stitch_id]['flops'], stitch_id
    predicted = predict_shared_prefix_saving(model, (32, 32), ids)
    assert predicted['sum_gflops'] * 1e9 == pytest.approx(
        sum(row['flops'] for row in table.values()))
    everything = predict_shared_prefix_saving(model, (32, 32))
    assert everything['stitches'] == 134
    assert 2.0 < everything['speedup'] < 4.0


def test_plain_equivalent_computes_the_same_and_benchmarks_run():
    model = _narrow_s_l()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for stitch_id in (0, 1, 5, 25, 40, 100):
            model.set_stitch(stitch_id)
            plain = plain_equivalent(model, stitch_id)
            assert isinstance(plain, torch.nn.Sequential)
            assert torch.equal(model(x)[0], plain(x)), stitch_id
    result = compare_with_plain(model, [0, 25], shape=(32, 32),
                                batch_size=2, warmup=0, repeats=1)
    assert set(result['stitches']) == {0, 25}
    for row in result['stitches'].values():
        assert row['max_abs_diff'] == 0 and row['ratio'] > 0
    sweep = measure_shared_prefix_sweep(model, [0, 1, 2, 25, 26],
                                        shape=(32, 32), batch_size=2)
    assert sweep['identical'] and sweep['measured_speedup'] > 0
    assert sweep['steps_reused'] > 0
    with pytest.raises(ValueError, match='classification'):
        plain_equivalent(_narrow_s_l(dense=True), 0)


SWEEP_CONFIG = """
_base_ = [{base!r}]
model = dict(
    backbone=dict(
        _delete_=True, type='SNNetv2', lora_rank=2, num_classes=4,
        anchors=[
            dict(model_name='deit3_small_patch16_224', img_size=32,
                 embed_dim=16, depth=3, num_heads=2),
            dict(model_name='deit3_base_patch16_224', img_size=32,
                 embed_dim=24, depth=6, num_heads=2)]),
    neck=None,
    head=dict(_delete_=True, type='ClsHead', topk=(1, )))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=40, edge='short'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]
test_dataloader = dict(batch_size=3, num_workers=0, persistent_workers=False,
                       dataset=dict(pipeline=test_pipeline))
test_evaluator = [dict(type='Accuracy', topk=(1, )),
                  dict(type='ScoreChecksum')]
test_cfg = dict(type='StitchSweepTestLoop', stitch_ids='all', report=False)
custom_imports = dict(imports=['flexvit_mm', 'tests.helpers.toy_stitched'],
                      allow_failed_imports=False)
"""


def test_sweep_loop_shares_prefixes_with_identical_metrics(tmp_path):
    from flexvit_mm.datasets.synthetic import make_synthetic
    root = make_synthetic('imagenet', str(tmp_path / 'data'), num_train=1,
                          num_val=2, num_classes=4, img_size=(32, 32))
    path = tmp_path / 'sweep.py'
    path.write_text(SWEEP_CONFIG.format(
        base=osp.join(CONFIGS, 'cls_imagenet.py')))
    cfg = Config.fromfile(str(path))
    cfg.merge_from_dict(dict(o.split('=', 1) for o in data_root_options(root)))
    results, weights = {}, None
    for share in (False, True):
        run_cfg = copy.deepcopy(cfg)
        run_cfg.test_cfg['share_prefixes'] = share
        run_cfg.work_dir = str(tmp_path / f'work_{share}')
        run_cfg.experiment_name = f'share_{uuid.uuid4().hex[:8]}'
        runner = Runner.from_cfg(run_cfg)
        if weights is None:
            weights = runner.model.state_dict()
        else:  # the same model in both runs
            runner.model.load_state_dict(weights)
        results[share] = runner.test()
    assert sorted(results[True]) == [0, 1, 2, 3, 5, 6, 7, 8]
    assert results[True] == results[False]
    assert len({m['check/checksum'] for m in results[True].values()}) == 8


def test_benchmark_tool_stitch_modes(tmp_path):
    out = str(tmp_path / 'sweep.json')
    proc = run_tool('tools/analysis/benchmark.py', DEMO, '--stitch-sweep',
                    'all', '--batch-size', '2', '--no-progress', '--out', out)
    assert 'predicted speedup' in proc.stdout
    with open(out) as f:
        sweep = json.load(f)
    assert sweep['identical'] is True and sweep['stitches'] == 8
    assert sweep['predicted']['speedup'] > 1.5
    out = str(tmp_path / 'plain.json')
    proc = run_tool('tools/analysis/benchmark.py', DEMO, '--stitches', '0,6',
                    '--batch-size', '2', '--warmup', '0', '--repeats', '2',
                    '--no-progress', '--out', out)
    assert 'ours/plain' in proc.stdout
    with open(out) as f:
        plain = json.load(f)
    assert sorted(plain['stitches']) == ['0', '6']
    bad = run_tool('tools/analysis/benchmark.py', DEMO, '--stitches', '4',
                   expect_ok=False)
    assert bad.returncode == 2 and 'valid ids' in bad.stderr


def test_official_comparison_refuses_depths_the_official_code_gets_wrong(
        tmp_path):
    from flexvit_mm.analysis.benchmark import BenchmarkError
    from flexvit_mm.analysis.official_snnetv2 import official_twin
    anchors = [dict(model_name='deit3_small_patch16_224', img_size=32,
                    embed_dim=16, depth=3, num_heads=2),
               dict(model_name='deit3_base_patch16_224', img_size=32,
                    embed_dim=24, depth=6, num_heads=2)]
    with pytest.raises(BenchmarkError, match='depths 12/24'):
        official_twin(SNNetv2(anchors, num_classes=3), str(tmp_path))
    with pytest.raises(BenchmarkError, match='not a SN-Netv2 checkout'):
        official_twin(_narrow_s_l(), str(tmp_path))
