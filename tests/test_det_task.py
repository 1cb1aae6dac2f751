"""Detection with a stitched backbone: ViTDet's SimpleFPN neck, and the
SN-Netv2 Mask R-CNN recipe trained and swept through the real tools."""
import json
import math
import os.path as osp

import pytest
import torch

import flexvit_mm  # noqa: F401  (registers the modules)
from flexvit_mm.det import SimpleFPN
from flexvit_mm.models.stitching.space import StitchingSpace

from .conftest import (CONFIGS, data_root_options, load_checkpoint,
                       run_tool, val_metrics)

CONFIG = osp.join(CONFIGS, 'det_snnetv2_tiny.py')
# The tiny pair of the test config: 3 and 6 blocks.
TINY_STITCH_IDS = list(StitchingSpace([3, 6]).stitch_ids)


def build_fpn(**kwargs):
    from mmdet.registry import MODELS
    cfg = dict(type='SimpleFPN', backbone_channel=48,
               in_channels=[12, 24, 48, 48], out_channels=16)
    cfg.update(kwargs)
    return MODELS.build(cfg)


# ------------------------------------------------------------ SimpleFPN
@pytest.mark.parametrize('num_outs', [4, 5])
def test_simple_fpn_levels_and_strides(num_outs):
    torch.manual_seed(0)
    neck = build_fpn(num_outs=num_outs)
    assert isinstance(neck, SimpleFPN)
    height, width = 96, 160  # a non-square image; its stride-16 map:
    feature = torch.randn(2, 48, height // 16, width // 16)
    outs = neck((feature, ))
    expected_strides = (4, 8, 16, 32, 64)[:num_outs]
    assert neck.strides == expected_strides
    assert len(outs) == num_outs
    for out, stride in zip(outs, expected_strides):
        assert out.shape[:2] == (2, 16)
        # mmdet's anchor generator needs ceil(size / stride) cells.
        assert tuple(out.shape[2:]) == (math.ceil(height / stride),
                                        math.ceil(width / stride))
        assert torch.isfinite(out).all()
    # The 1/16 level is the map itself through 1x1 + 3x3 convs; the
    # extra level is a stride-2 subsample of the 1/32 one.
    if num_outs == 5:
        assert torch.equal(outs[4], outs[3][:, :, ::2, ::2])


def test_simple_fpn_in_index_selects_the_map():
    torch.manual_seed(0)
    neck = build_fpn(in_index=0, num_outs=4).eval()
    feature = torch.randn(1, 48, 4, 6)
    other = torch.randn(1, 7, 4, 6)  # e.g. an earlier, narrower output
    chosen = neck((feature, other))
    direct = neck(feature)  # a bare map is accepted too
    for a, b in zip(chosen, direct):
        assert torch.equal(a, b)
    # SNNetv2(output_cls_token=True) yields [map, cls_token] pairs.
    paired = neck([[feature, torch.randn(1, 48)]])
    assert torch.equal(paired[0], direct[0])
    # The default (-1) takes the last output: here the wrong width.
    with pytest.raises(ValueError, match=r'\(N, 48, H, W\).*got shape'):
        build_fpn()((feature, other))


def test_simple_fpn_gradients_reach_input_and_every_parameter():
    torch.manual_seed(0)
    neck = build_fpn(num_outs=5)
    feature = torch.randn(2, 48, 6, 10, requires_grad=True)
    outs = neck((feature, ))
    # A random projection: LayerNorm makes a plain sum's gradient vanish.
    loss = sum((out * torch.randn_like(out)).sum() for out in outs)
    loss.backward()
    assert feature.grad is not None and feature.grad.abs().sum() > 0
    for name, param in neck.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_simple_fpn_without_norm_uses_conv_bias():
    neck = build_fpn(norm_cfg=None, act_cfg=dict(type='ReLU'), num_outs=4)
    assert neck.lateral_convs[0].conv.bias is not None
    assert not any('ln' in name for name, _ in neck.named_modules())
    outs = neck(torch.randn(1, 48, 3, 5))
    # An odd map: the 2x2 max-pool floors, as in ViTDet.
    assert [tuple(o.shape[2:]) for o in outs] == [(12, 20), (6, 10), (3, 5),
                                                  (1, 2)]
    assert all((o >= 0).all() for o in outs)  # the ReLU is applied


@pytest.mark.parametrize('kwargs, message', [
    (dict(in_channels=[12, 24, 48]), 'in_channels must list the widths'),
    (dict(in_channels=[12, 24, 32, 48]), 'must equal backbone_channel'),
    (dict(in_channels=[12, 0, 48, 48]), r'in_channels\[1\] must be a '
     'positive integer'),
    (dict(num_outs=3), 'num_outs must be at least 4'),
    (dict(out_channels=0), 'out_channels must be a positive integer'),
    (dict(backbone_channel=48.0), 'backbone_channel must be a positive'),
    (dict(in_index='last'), 'in_index must be an integer'),
    (dict(norm_cfg='LN'), 'norm_cfg must be a dict or None'),
])
def test_simple_fpn_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_fpn(**kwargs)


def test_simple_fpn_rejects_bad_inputs():
    neck = build_fpn(in_index=2)
    with pytest.raises(ValueError, match='in_index 2 is out of range for '
                       'the backbone\'s 1 outputs'):
        neck((torch.randn(1, 48, 4, 4), ))
    with pytest.raises(ValueError, match='sequence of maps'):
        neck(())
    with pytest.raises(ValueError, match='got shape'):
        neck(torch.randn(48, 4, 4))


# -------------------------------------------------------- the detector
def test_detector_features_follow_the_stitch():
    """The tiny recipe's Mask R-CNN: five pyramid levels at strides 4-64
    from any stitch, and different stitches give different features."""
    from mmengine import Config
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    from flexvit_mm.models.stitching.selection import set_stitch
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    detector = MODELS.build(cfg.model).eval()
    assert detector.backbone.stitch_ids == tuple(TINY_STITCH_IDS)
    images = torch.randn(1, 3, 96, 160)
    features = {}
    with torch.no_grad():
        for stitch_id in (0, TINY_STITCH_IDS[-1]):
            set_stitch(detector, stitch_id)
            features[stitch_id] = detector.extract_feat(images)
    for levels in features.values():
        assert [tuple(f.shape) for f in levels] == [
            (1, 16, 96 // s, math.ceil(160 / s)) for s in (4, 8, 16, 32)
        ] + [(1, 16, 2, 3)]
    assert not torch.allclose(features[0][2],
                              features[TINY_STITCH_IDS[-1]][2])


def test_mask_rcnn_trains_and_sweeps_every_stitch(synthetic, tmp_path):
    root = synthetic('coco')
    options = data_root_options(root, 'coco')
    work_dir = str(tmp_path / 'work')
    proc = run_tool('tools/train.py', CONFIG, '--work-dir', work_dir,
                    '--cfg-options', *options)
    log = proc.stdout + proc.stderr
    assert 'fitted 5 stitching layers by least squares on 4 images' in log
    assert 'StitchedLayerDecayOptimWrapperConstructor' in log

    # Validation at the last iteration ran CocoMetric on the eval stitch.
    evaluations = [m for m in val_metrics(work_dir) if 'coco/bbox_mAP' in m]
    assert len(evaluations) == 1
    assert 0.0 <= evaluations[0]['coco/segm_mAP'] <= 1.0

    checkpoint = load_checkpoint(osp.join(work_dir, 'iter_4.pth'))
    assert checkpoint['meta']['stitch_sampler']
    # Layer-wise lr decay: the backbone's groups have several lr scales.
    lrs = {round(g['lr'], 12) for g in
           checkpoint['optimizer']['param_groups']}
    assert len(lrs) > 1

    sweep_dir = str(tmp_path / 'sweep')
    run_tool('tools/test.py', CONFIG, osp.join(work_dir, 'iter_4.pth'),
             '--work-dir', sweep_dir, '--stitch-id', 'all', '--flops-shape',
             '128', '128', '--cfg-options', *options)
    with open(osp.join(sweep_dir, 'stitches.json')) as f:
        rows = json.load(f)
    assert [row['id'] for row in rows] == TINY_STITCH_IDS
    for row in rows:
        for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
            # -1 would mean COCO had nothing to evaluate.
            assert math.isfinite(row[key]) and 0.0 <= row[key] <= 1.0, row
        assert row['gflops'] > 0
    # Stitches differ in cost: the sweep really ran different routes.
    assert len({row['gflops'] for row in rows}) > 1
