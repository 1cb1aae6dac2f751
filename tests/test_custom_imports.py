"""A config that loads flexvit_mm only through custom_imports builds and
trains a registered module under mmseg, mmdet and mmpretrain, with plain
mmengine (no flexvit_mm tool, no import of ours beforehand)."""
import os.path as osp
import textwrap

import pytest
import torch
from mmcv.cnn import build_norm_layer
from mmengine.registry import DefaultScope, init_default_scope

from flexvit_mm.models import LayerNorm2d

from .conftest import CONFIGS, data_root_options, run_tool, tool_env

CASES = {
    'mmseg': ('seg_ade20k.py', 'ade20k'),
    'mmdet': ('det_mask-rcnn_coco.py', 'coco'),
    'mmpretrain': ('cls_imagenet.py', 'imagenet'),
}


@pytest.mark.parametrize('toolbox', sorted(CASES))
def test_custom_imports_alone_builds_and_trains(toolbox, synthetic,
                                                tmp_path):
    config, kind = CASES[toolbox]
    options = dict(
        item.split('=', 1) for item in data_root_options(synthetic(kind),
                                                          kind))
    script = textwrap.dedent(f"""
        import sys
        from mmengine.config import Config
        from mmengine.runner import Runner
        assert 'flexvit_mm' not in sys.modules
        cfg = Config.fromfile({osp.join(CONFIGS, config)!r})
        assert 'flexvit_mm' in sys.modules, 'custom_imports did not import'
        cfg.merge_from_dict({options!r})
        cfg.merge_from_dict({{'train_cfg.max_iters': 2}})
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.work_dir = {str(tmp_path)!r}
        runner = Runner.from_cfg(cfg)
        assert runner.cfg.default_scope == {toolbox!r}
        from flexvit_mm.models import LayerNorm2d
        norms = [m for m in runner.model.modules()
                 if isinstance(m, LayerNorm2d)]
        assert norms, 'the registered module was not built'
        before = norms[0].weight.detach().clone()
        runner.train()
        assert not norms[0].weight.detach().equal(before), 'not trained'
        print('trained', len(norms))
        """)
    proc = run_tool('-c', script, env=tool_env())
    assert 'trained' in proc.stdout


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet', 'mmpretrain'])
def test_layernorm2d_builds_from_every_toolbox_scope(scope):
    init_default_scope(scope)
    with DefaultScope.overwrite_default_scope(scope):
        name, layer = build_norm_layer(dict(type='LayerNorm2d'), 8)
    assert isinstance(layer, LayerNorm2d) and name == 'ln'


def test_layernorm2d_normalises_channels():
    layer = LayerNorm2d(4)
    with torch.no_grad():
        layer.weight.uniform_()
        layer.bias.uniform_()
    x = torch.randn(2, 4, 3, 5)
    expected = torch.nn.functional.layer_norm(
        x.permute(0, 2, 3, 1), (4, ), layer.weight, layer.bias,
        1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(layer(x), expected)
    with pytest.raises(ValueError, match='N, C, H, W'):
        layer(torch.randn(2, 4))
