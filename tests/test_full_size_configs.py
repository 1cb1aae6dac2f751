"""Every full-size dense-task config builds with full-size anchors (random
init, no pretrained files needed) and runs forwards for the two anchors and
one stitch of every route kind (SL, LS, LSL, SLS).

Heavy on CPU (DeiT3-L at 512x512), hence marked slow; CI runs it. The
cheapest route of each kind is chosen so that one config takes seconds, not
minutes; the expensive anchor L is always run.
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine import Config
from mmengine.registry import MODELS, init_default_scope

from flexvit_mm.models.stitching.selection import find_stitched_backbone
from flexvit_mm.models.stitching.space import KINDS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    osp.relpath(p, REPO) for task in ('seg', 'depth', 'det')
    for p in glob.glob(osp.join(REPO, 'configs', task, 'snnetv2_*.py')))
# The input each task's forward is checked at: segmentation needs its crop
# (the relative position bias tables are for a 32x32 token grid); depth and
# detection anchors resample their position embeddings to any size.
INPUTS = {'seg': (512, 512), 'depth': (224, 288), 'det': (256, 320)}


def cheapest_of_each_kind(backbone):
    widths = [a.embed_dim for a in backbone.anchors]

    def cost(route):
        return sum((seg.last - seg.first + 1) * widths[seg.anchor]**2
                   for seg in route.segments)

    chosen = [0, 1]
    for kind in KINDS[1:]:
        ids = backbone.space.ids_of_kind(kind)
        chosen.append(min(ids, key=lambda i: cost(backbone.space[i])))
    return chosen


def test_every_dense_config_is_covered():
    tasks = {c.split(osp.sep)[1] for c in CONFIGS}
    assert tasks == {'seg', 'depth', 'det'}
    assert len(CONFIGS) >= 7


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS)
def test_full_size_config_builds_and_runs_every_route_kind(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    backbone = find_stitched_backbone(model)
    assert len(backbone.stitch_ids) == 134
    names = [a.default_cfg['architecture'] for a in backbone.anchors]
    assert names[1] == 'deit3_large_patch16_224', names
    task = config.split(osp.sep)[1]
    inputs = torch.randn(1, 3, *INPUTS[task])
    ids = cheapest_of_each_kind(backbone)
    assert [backbone.space[i].kind for i in ids] == [
        'anchor', 'anchor', 'SL', 'LS', 'LSL', 'SLS']
    shapes = set()
    with torch.no_grad():
        for stitch_id in ids:
            backbone.set_stitch(stitch_id)
            features = model.extract_feat(inputs)  # backbone (+ neck)
            # DPT's inputs are [map, cls_token] pairs: check the maps.
            features = [f[0] if isinstance(f, (list, tuple)) else f
                        for f in features]
            assert all(torch.isfinite(f).all() for f in features), stitch_id
            shapes.add(tuple(tuple(f.shape) for f in features))
        # The heads cost the same for every stitch: run them once.
        backbone.set_stitch(0)
        outputs = None if task == 'det' else model(inputs, mode='tensor')
    # Every stitch gives the same feature shapes (the large width).
    assert len(shapes) == 1, shapes
    shape = shapes.pop()
    if task == 'det':
        assert len(shape) == 5 and all(s[1] == 256 for s in shape)
        assert [s[-1] for s in shape] == [80, 40, 20, 10, 5]
    else:
        assert len(shape) == 4 and all(s[1] == 1024 for s in shape)
        channels = 1 if task == 'depth' else cfg.model.decode_head.num_classes
        assert outputs.shape[:2] == (1, channels)
        assert torch.isfinite(outputs).all()
    # Parameter counts of the paper's Table 1 (SETR-naive, with heads).
    total = sum(p.numel() for p in model.parameters()) / 1e6
    head = cfg.model.get('decode_head') or {}
    if head.get('type') == 'SETRUPHead':
        expected = 412 if 'deit3-b-l' in config else 338
        assert abs(total - expected) < 1.5, total
