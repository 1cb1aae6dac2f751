"""Training a stitched classifier through tools/train.py: least-squares
init, FLOPs-grouped sampling, the same stitch on every rank, exact resume."""
import json
import os.path as osp

import pytest
import torch

from flexvit_mm.models.stitching.sampler import FlopsGroupedSampler

from .conftest import CONFIGS, data_root_options, load_checkpoint, run_tool
from .helpers.stitch_record import read_records, train_on_two_ranks

CONFIG = osp.join(CONFIGS, 'cls_snnetv2_tiny.py')


def test_training_initialises_samples_and_checkpoints(synthetic, tmp_path):
    work_dir = str(tmp_path / 'work')
    proc = run_tool('tools/train.py', CONFIG, '--work-dir', work_dir,
                    '--no-validate', '--cfg-options',
                    *data_root_options(synthetic('imagenet')))
    log = proc.stdout + proc.stderr
    assert 'fitted 5 stitching layers by least squares on 8 images' in log

    with open(osp.join(work_dir, 'stitch_flops_48x48.json')) as f:
        table = {int(k): v for k, v in json.load(f)['table'].items()}
    assert sorted(table) == [0, 1, 2, 3, 5, 6, 7, 8]
    # The drawn stitches are exactly the sampler's, a pure function of
    # (seed, iteration).
    sampler = FlopsGroupedSampler(
        {i: v['flops'] / 1e9 for i, v in table.items()}, 0.0005, seed=0)
    _, trained = read_records(work_dir)
    assert [trained[i]['stitch'] for i in range(6)] == [
        sampler.sample(i) for i in range(6)]
    assert len({trained[i]['stitch'] for i in range(6)}) > 1

    first, last = (load_checkpoint(osp.join(work_dir, f'iter_{i}.pth'))
                   for i in (3, 6))
    assert first['meta']['stitch_sampler']['flops'] == last['meta'][
        'stitch_sampler']['flops']
    # W0 is frozen at its least-squares value; LoRA B learns.
    for front, count in ((0, 3), (1, 2)):
        for k in range(count):
            key = f'backbone.stitch_layers.{front}.{k}.weight'
            assert torch.equal(first['state_dict'][key],
                               last['state_dict'][key])
    assert any(
        not torch.equal(first['state_dict'][k], last['state_dict'][k])
        for k in first['state_dict'] if k.endswith('lora_B'))


def test_resume_reproduces_stitches_and_losses(synthetic, tmp_path):
    options = data_root_options(synthetic('imagenet'))
    straight = str(tmp_path / 'straight')
    run_tool('tools/train.py', CONFIG, '--work-dir', straight,
             '--no-validate', '--cfg-options', *options)
    interrupted = str(tmp_path / 'interrupted')
    run_tool('tools/train.py', CONFIG, '--work-dir', interrupted,
             '--no-validate', '--cfg-options', 'train_cfg.max_iters=3',
             *options)
    proc = run_tool('tools/train.py', CONFIG, '--work-dir', interrupted,
                    '--no-validate', '--resume', '--cfg-options', *options)
    assert 'a checkpoint was loaded, keeping its stitching layers' in (
        proc.stdout + proc.stderr)
    _, a = read_records(straight)
    _, b = read_records(interrupted)
    assert sorted(b) == list(range(6))
    for i in range(3, 6):
        assert b[i]['stitch'] == a[i]['stitch']
        assert b[i]['loss'] == pytest.approx(a[i]['loss'], rel=1e-6, abs=0)
    final_a = load_checkpoint(osp.join(straight, 'iter_6.pth'))['state_dict']
    final_b = load_checkpoint(osp.join(interrupted, 'iter_6.pth'))['state_dict']
    for key, value in final_a.items():
        torch.testing.assert_close(final_b[key], value, rtol=1e-6,
                                   atol=1e-7)


def test_resume_refuses_a_checkpoint_of_other_anchors(synthetic, tmp_path):
    options = data_root_options(synthetic('imagenet'))
    work_dir = str(tmp_path / 'work')
    run_tool('tools/train.py', CONFIG, '--work-dir', work_dir,
             '--no-validate', '--cfg-options', 'train_cfg.max_iters=3',
             *options)
    proc = run_tool(
        'tools/train.py', CONFIG, '--work-dir', work_dir, '--no-validate',
        '--resume', '--cfg-options', *options,
        'model.backbone.anchors.1.depth=4', expect_ok=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert 'another stitched pair' in proc.stderr
    assert 'depths: checkpoint [3, 6], config [3, 4]' in proc.stderr


def test_two_ranks_train_the_same_stitch_and_end_identical(
        synthetic, tmp_path):
    stitches = train_on_two_ranks(
        CONFIG, str(tmp_path / 'dist'),
        data_root_options(synthetic('imagenet')))
    assert len(stitches) == 6


def test_test_tool_evaluates_stitches_in_one_pass(synthetic, tmp_path):
    options = data_root_options(synthetic('imagenet'))
    work_dir = str(tmp_path / 'work')
    run_tool('tools/train.py', CONFIG, '--work-dir', work_dir,
             '--no-validate', '--cfg-options', *options)
    checkpoint = osp.join(work_dir, 'iter_6.pth')

    sweep_dir = str(tmp_path / 'sweep')
    proc = run_tool('tools/test.py', CONFIG, checkpoint, '--work-dir',
                    sweep_dir, '--stitch-id', 'all', '--cfg-options',
                    *options)
    assert 'each batch read once' in proc.stdout + proc.stderr
    with open(osp.join(sweep_dir, 'stitches.json')) as f:
        rows = json.load(f)
    assert [r['id'] for r in rows] == [0, 1, 2, 3, 5, 6, 7, 8]
    for row in rows:
        assert 'accuracy/top1' in row and row['gflops'] > 0
        assert row['route'] and row['params'] > 0
    assert osp.getsize(osp.join(sweep_dir, 'stitches_pareto.png')) > 1000
    with open(osp.join(sweep_dir, 'stitches.csv')) as f:
        assert len(f.read().strip().splitlines()) == len(rows) + 1

    # One stitch alone gives the same metrics as in the sweep.
    single_dir = str(tmp_path / 'single')
    run_tool('tools/test.py', CONFIG, checkpoint, '--work-dir', single_dir,
             '--stitch-id', '6', '--no-flops', '--cfg-options', *options)
    with open(osp.join(single_dir, 'stitches.json')) as f:
        single, = json.load(f)
    swept = next(r for r in rows if r['id'] == 6)
    assert single['accuracy/top1'] == swept['accuracy/top1']
    assert single['accuracy/top5'] == swept['accuracy/top5']

    bad = run_tool('tools/test.py', CONFIG, checkpoint, '--work-dir',
                   str(tmp_path / 'bad'), '--stitch-id', '3,4',
                   '--cfg-options', *options, expect_ok=False)
    assert bad.returncode == 2 and 'Traceback' not in bad.stderr
    assert '0-3, 5-8' in bad.stderr and '4' in bad.stderr


def test_stitched_segmentor_trains_and_sweeps(synthetic, tmp_path):
    config = osp.join(CONFIGS, 'seg_snnetv2_tiny.py')
    options = data_root_options(synthetic('ade20k'))
    work_dir = str(tmp_path / 'work')
    run_tool('tools/train.py', config, '--work-dir', work_dir,
             '--no-validate', '--cfg-options', *options)
    sweep_dir = str(tmp_path / 'sweep')
    run_tool('tools/test.py', config, osp.join(work_dir, 'iter_4.pth'),
             '--work-dir', sweep_dir, '--stitch-id', 'all',
             '--flops-shape', '64', '64', '--cfg-options', *options)
    with open(osp.join(sweep_dir, 'stitches.json')) as f:
        rows = json.load(f)
    assert [r['id'] for r in rows] == [0, 1, 2, 3, 5, 6, 7, 8]
    assert all('mIoU' in r and 'aAcc' in r and r['gflops'] > 0
               for r in rows)
