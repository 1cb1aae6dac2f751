"""SN-Netv2 semantic segmentation on ADE20K and COCO-Stuff-10K through the
real tools: the task configs (shrunk), least-squares init, FLOPs-grouped
sampling, validation of a fixed set of stitches, the all-stitch test sweep,
2-process training, and the official-checkpoint converter tool."""
import json
import math
import os.path as osp

import pytest
import torch

from flexvit_mm.models.stitching.space import StitchingSpace

from .conftest import (CONFIGS, data_root_options, load_checkpoint,
                       run_tool, val_metrics)
from .helpers.stitch_record import train_on_two_ranks

TINY_IDS = StitchingSpace([3, 6]).stitch_ids


@pytest.mark.parametrize('kind,name,classes',
                         [('ade20k', 'ade20k', 150),
                          ('coco_stuff10k', 'cocostuff10k', 171)])
def test_segmentation_trains_validates_and_sweeps(kind, name, classes,
                                                  synthetic, tmp_path):
    config = osp.join(CONFIGS, f'seg_snnetv2_{name}_tiny.py')
    options = data_root_options(synthetic(kind))
    work_dir = str(tmp_path / kind)
    proc = run_tool('tools/train.py', config, '--work-dir', work_dir,
                    '--cfg-options', *options)
    log = proc.stdout + proc.stderr
    assert 'fitted 5 stitching layers by least squares' in log
    # Validation: the two anchors and the middle of the FLOPs range,
    # each logged, plus their mean under the plain name.
    metrics = val_metrics(work_dir)[-1]
    with open(osp.join(work_dir, 'stitch_flops_64x64.json')) as f:
        table = json.load(f)['table']
    flops = {int(i): row['flops'] for i, row in table.items()}
    middle = (min(flops.values()) + max(flops.values())) / 2
    expected_middle = min(sorted(flops),
                          key=lambda i: abs(flops[i] - middle))
    validated = sorted({0, 1, expected_middle})
    for stitch_id in validated:
        assert 0 <= metrics[f'stitch_{stitch_id}/mIoU'] <= 100
    assert not any(f'stitch_{i}/mIoU' in metrics for i in TINY_IDS
                   if i not in validated)
    mean = sum(metrics[f'stitch_{i}/mIoU'] for i in validated) / len(
        validated)
    assert math.isclose(metrics['mIoU'], mean, abs_tol=0.01)

    sweep = str(tmp_path / f'{kind}_sweep')
    run_tool('tools/test.py', config, osp.join(work_dir, 'iter_4.pth'),
             '--work-dir', sweep, '--stitch-id', 'all', '--cfg-options',
             *options)
    with open(osp.join(sweep, 'stitches.json')) as f:
        rows = json.load(f)
    assert [r['id'] for r in rows] == list(TINY_IDS)
    for row in rows:
        assert math.isfinite(row['mIoU']) and 0 <= row['mIoU'] <= 100
        assert row['gflops'] > 0
    assert osp.isfile(osp.join(sweep, 'stitches_pareto.png'))
    # The checkpoint's heads are the task's.
    state = load_checkpoint(osp.join(work_dir, 'iter_4.pth'))
    assert state['state_dict']['decode_head.conv_seg.weight'].shape[
        0] == classes


def test_two_ranks_train_the_same_segmentation_stitches(synthetic, tmp_path):
    config = osp.join(CONFIGS, 'dist_seg_snnetv2_ade20k_tiny.py')
    stitches = train_on_two_ranks(config, str(tmp_path / 'dist'),
                                  data_root_options(synthetic('ade20k')))
    assert len(set(stitches)) > 1  # the sampler did move between stitches


def test_converter_tool_writes_a_loadable_segmentor(synthetic, tmp_path):
    """An official-layout segmentation checkpoint (mmseg MAE anchors,
    relative position bias, LoRA) converts with the tool for the tiny ADE20K
    config, loads strictly, and is refused for COCO-Stuff's 171 classes."""
    from mmengine import Config
    from mmengine.registry import MODELS, init_default_scope
    config = osp.join(CONFIGS, 'seg_snnetv2_ade20k_tiny.py')
    cfg = Config.fromfile(config)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    # Write our model's weights in the official layout.
    official = {}
    for key, value in model.state_dict().items():
        if not key.startswith('backbone.'):
            official[key] = value
            continue
        key = key.replace('.patch_embed.proj.', '.patch_embed.projection.')
        key = key.replace('.blocks.', '.layers.').replace('.norm1.', '.ln1.')
        key = key.replace('.norm2.', '.ln2.').replace('.mlp.fc1.',
                                                      '.ffn.layers.0.0.')
        key = key.replace('.mlp.fc2.', '.ffn.layers.1.')
        if key.endswith('.attn.q_bias'):
            v_bias = model.state_dict()[key.replace(
                'layers.', 'blocks.').replace('q_bias', 'v_bias')]
            official[key.replace('q_bias', 'qkv.bias')] = torch.cat(
                [value, torch.randn_like(value), v_bias])
            continue
        if key.endswith('.attn.v_bias'):
            continue
        if '.stitch_layers.' in key:
            front_layer, name = key.rsplit('.', 1)
            key = f'{front_layer}.transform.{name}'
        official[key] = value
    src = str(tmp_path / 'setr_naive_ade20k_official.pth')
    torch.save({'state_dict': official, 'meta': {}}, src)
    dst = str(tmp_path / 'converted.pth')
    proc = run_tool('tools/model_converters/snnetv2_to_flexvit.py', config,
                    src, dst)
    assert 'LoRA rank 4' in proc.stdout and '8 stitches' in proc.stdout
    converted = load_checkpoint(dst)['state_dict']
    reference = model.state_dict()
    assert set(converted) == set(reference)
    for key, value in reference.items():
        torch.testing.assert_close(converted[key], value, rtol=0, atol=0)
    # It is a checkpoint tools/test.py reads.
    sweep = str(tmp_path / 'sweep')
    run_tool('tools/test.py', config, dst, '--work-dir', sweep,
             '--stitch-id', '0,8', '--cfg-options',
             *data_root_options(synthetic('ade20k')))
    assert osp.isfile(osp.join(sweep, 'stitches.json'))
    refused = run_tool('tools/model_converters/snnetv2_to_flexvit.py',
                       osp.join(CONFIGS, 'seg_snnetv2_cocostuff10k_tiny.py'),
                       src, str(tmp_path / 'other.pth'), expect_ok=False)
    assert refused.returncode == 2 and 'Traceback' not in refused.stderr
    assert 'heads do not fit' in refused.stderr
    assert not osp.exists(str(tmp_path / 'other.pth'))
