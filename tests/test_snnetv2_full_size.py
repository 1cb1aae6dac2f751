"""Full-size DeiT3 stitched pairs: the ImageNet configs build, and the
per-stitch GFLOPs of S-L at 224 match the official numbers."""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from flexvit_mm.analysis.stitch_table import compute_stitch_table

from .conftest import REPO

OFFICIAL_FLOPS = osp.join(REPO, 'tests', 'data',
                          'official_flops_deit3_s_l_224.json')


def _build(config, **backbone):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'cls', config))
    init_default_scope('mmpretrain')
    # The anchors' pretrained files are read by init_weights only, which
    # is not called: random weights, no downloads.
    cfg.model.backbone.update(backbone)
    return MODELS.build(cfg.model)


def test_deit3_s_l_stitch_gflops_match_official():
    with open(OFFICIAL_FLOPS) as f:
        official = {int(k): v for k, v in json.load(f).items()}
    backbone = _build('snnetv2_deit3-s-l_in1k.py').backbone
    table = compute_stitch_table(backbone, (224, 224))
    assert sorted(table) == sorted(official)
    for stitch_id, flops in official.items():
        assert table[stitch_id]['flops'] == pytest.approx(flops, rel=0.01), \
            stitch_id
    # The headline numbers: anchors 4.61 / 61.60 G, levels 9.4 ... 56.8 G.
    assert round(table[0]['flops'] / 1e9, 2) == 4.61
    assert round(table[1]['flops'] / 1e9, 2) == 61.60
    levels = [round(table[i]['flops'] / 1e9, 1) for i in range(12, 1, -1)]
    assert levels == [9.4, 14.2, 18.9, 23.7, 28.4, 33.1, 37.9, 42.6, 47.4,
                      52.1, 56.8]


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
