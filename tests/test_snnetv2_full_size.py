"""Full-size DeiT3 stitched pairs: the ImageNet configs build, and the
per-stitch GFLOPs of S-L at 224 match the official numbers."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from flexvit_mm.analysis.stitch_table import compute_stitch_table

from .conftest import REPO

# Official fvcore GFLOPs of DeiT3 S-L at 224: the anchors and the 11 levels
# of the stitches (ziplab/SN-Netv2 committed FLOPs files).
ANCHORS = {0: 4.61, 1: 61.60}
LEVELS = (9.4, 14.2, 18.9, 23.7, 28.4, 33.1, 37.9, 42.6, 47.4, 52.1, 56.8)


def _build(config, **backbone):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'cls', config))
    init_default_scope('mmpretrain')
    for anchor in cfg.model.backbone.anchors:
        anchor.checkpoint = None  # random weights: no downloads here
    cfg.model.backbone.update(backbone)
    return MODELS.build(cfg.model)


def test_deit3_s_l_stitch_gflops_match_official():
    model = _build('snnetv2_deit3-s-l_in1k.py')
    backbone = model.backbone
    # The anchors and one stitch of every FLOPs level (SL ids 2..12 keep
    # 22, 20, ..., 2 large blocks), plus LS, LSL and SLS stitches that must
    # fall on the same levels.
    ids = [0, 1] + list(range(2, 13)) + [14, 25, 80, 134]
    table = compute_stitch_table(backbone, (224, 224), ids)
    gflops = {i: table[i]['flops'] / 1e9 for i in ids}
    for i, expected in ANCHORS.items():
        assert gflops[i] == pytest.approx(expected, rel=0.01)
    levels = sorted(gflops[i] for i in range(2, 13))
    for got, expected in zip(levels, LEVELS):
        assert got == pytest.approx(expected, rel=0.01)
    # Officially each level holds ~12 stitches within 0.2 GFLOPs of it.
    for i in (14, 25, 80, 134):
        nearest = min(LEVELS, key=lambda level: abs(level - gflops[i]))
        assert abs(gflops[i] - nearest) < 0.2, (i, gflops[i])


@pytest.mark.parametrize('config,depths,stitches', [
    ('snnetv2_deit3-s-b_in1k.py', (12, 12), 134),
    ('snnetv1_deit3-s-l_in1k.py', (12, 24), 13),
])
def test_imagenet_configs_build_and_run(config, depths, stitches):
    model = _build(config).eval()
    backbone = model.backbone
    assert backbone.space.depths == depths
    assert len(backbone.stitch_ids) == stitches
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for stitch_id in (backbone.stitch_ids[0], backbone.stitch_ids[-1]):
            backbone.set_stitch(stitch_id)
            assert model(images, mode='tensor').shape == (1, 1000)
