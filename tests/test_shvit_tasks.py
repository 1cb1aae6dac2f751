"""SHViT on the downstream tasks: the SHViTFPN neck, the ImageNet / COCO /
ADE20K configs trained and tested through the real tools on generated
data, and ``tools/test.py --fuse``."""
import math
import os.path as osp
import pickle

import pytest
import torch
import torch.nn as nn

import flexvit_mm  # noqa: F401  (registers the modules)
from flexvit_mm.det import SHViTFPN

from .conftest import (CONFIGS, REPO, data_root_options, latest_metrics,
                       run_tool)

TINY_ARCH = dict(embed_dims=[16, 24, 32], depths=[1, 1, 1],
                 partial_dims=[4, 8, 8], types=['i', 's', 's'])


def build_neck(**kwargs):
    from mmdet.registry import MODELS
    cfg = dict(type='SHViTFPN', in_channels=[16, 24, 32], out_channels=8,
               num_outs=5)
    cfg.update(kwargs)
    return MODELS.build(cfg)


@pytest.fixture(scope='module')
def tiny_features():
    """The tiny SHViT's stem + stage maps of an 800x1333 image (not a
    multiple of 64): strides 4, 8, 16, 32, 64."""
    from flexvit_mm.models.backbones.shvit import SHViT
    torch.manual_seed(0)
    backbone = SHViT(TINY_ARCH, out_indices=(0, 1, 2),
                     with_stem_features=True).eval()
    with torch.no_grad():
        return backbone(torch.randn(1, 3, 800, 1333))


# ------------------------------------------------------------- the neck
@pytest.mark.parametrize('num_extra, extra_convs, strides', [
    (1, 'on_input', (8, 16, 32, 64, 128)),  # RetinaNet
    (2, False, (4, 8, 16, 32, 64)),  # Mask R-CNN
])
def test_neck_levels_from_transposed_convs(tiny_features, num_extra,
                                           extra_convs, strides):
    neck = build_neck(num_extra_trans_convs=num_extra,
                      add_extra_convs=extra_convs).eval()
    with torch.no_grad():
        outs = neck(tiny_features[2:])
    assert len(outs) == 5
    # 1333 / 16 -> 84: transposed convs double it (168, 336) where the
    # true stride-8/4 sizes are 167 / 334; stride >= 16 is ceil(W / s).
    expected = {4: (200, 336), 8: (100, 168)}
    for out, stride in zip(outs, strides):
        size = expected.get(stride, (math.ceil(800 / stride),
                                     math.ceil(1333 / stride)))
        assert tuple(out.shape) == (1, 8) + size, stride
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('num_extra', [1, 2])
def test_neck_levels_from_stem_features(tiny_features, num_extra):
    neck = build_neck(num_extra_trans_convs=num_extra,
                      stem_in_channels=[4, 8],
                      add_extra_convs='on_input' if num_extra == 1 else
                      False).eval()
    assert neck.extra_trans_convs is None
    # RetinaNet's single extra level uses only the stride-8 stem map.
    assert [m.conv.in_channels for m in neck.stem_lateral_convs] == \
        [4, 8][-num_extra:]
    with torch.no_grad():
        outs = neck(tiny_features)
    strides = (4, 8, 16, 32, 64) if num_extra == 2 else (8, 16, 32, 64, 128)
    for out, stride in zip(outs, strides):
        # real stem maps: exactly ceil(size / stride) at every level
        assert tuple(out.shape[2:]) == (math.ceil(800 / stride),
                                        math.ceil(1333 / stride)), stride


@pytest.mark.parametrize('stem', [False, True])
def test_neck_gradients_reach_inputs_and_every_parameter(stem):
    torch.manual_seed(0)
    neck = build_neck(num_extra_trans_convs=2,
                      stem_in_channels=[4, 8] if stem else None,
                      num_outs=6, add_extra_convs='on_output',
                      relu_before_extra_convs=True)
    sizes = [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]
    channels = [4, 8, 16, 24, 32]
    inputs = [torch.randn(2, c, *s, requires_grad=True)
              for c, s in zip(channels, sizes)][0 if stem else 2:]
    outs = neck(inputs)
    assert len(outs) == 6
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    for x in inputs:
        assert x.grad is not None and x.grad.abs().sum() > 0
    for name, param in neck.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize('kwargs, message', [
    (dict(in_channels=[]), 'in_channels must be a list'),
    (dict(in_channels=[16, 0, 32]), r'in_channels\[1\] must be a positive'),
    (dict(out_channels=0), 'out_channels must be a positive integer'),
    (dict(num_extra_trans_convs=-1), 'num_extra_trans_convs must be an'),
    (dict(num_extra_trans_convs=True), 'num_extra_trans_convs must be an'),
    (dict(num_outs=4, num_extra_trans_convs=2), 'num_outs=4 is less than'),
    (dict(stem_in_channels=[4, 8]), 'num_extra_trans_convs=0'),
    (dict(stem_in_channels=[8], num_extra_trans_convs=2),
     'lists only 1 stem maps'),
    (dict(add_extra_convs='on_stem'), 'add_extra_convs must be one of'),
    (dict(norm_cfg='BN'), 'norm_cfg must be a dict or None'),
])
def test_neck_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_neck(**kwargs)


def test_neck_rejects_mismatched_backbone_outputs(tiny_features):
    neck = build_neck(num_extra_trans_convs=2, stem_in_channels=[4, 8])
    assert isinstance(neck, SHViTFPN) and neck.num_inputs == 5
    # the backbone without with_stem_features=True
    with pytest.raises(ValueError, match='2 stem maps \\+ 3 stage maps'):
        neck(tiny_features[2:])
    with pytest.raises(ValueError, match=r'input 2: expected \(N, 16, H, W'):
        neck(tiny_features[:2] + tiny_features[3:] + tiny_features[2:3])
    with pytest.raises(ValueError, match='tuple of maps'):
        neck(tiny_features[0])


# ------------------------------------------------ the real full configs
@pytest.mark.parametrize('variant, params', [('s1', 6.33), ('s2', 11.48),
                                             ('s3', 14.25), ('s4', 16.59)])
def test_cls_configs_build_with_the_full_arch(variant, params):
    from mmengine import Config
    from mmengine.registry import init_default_scope

    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'cls', f'shvit-{variant}_in1k.py'))
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    # the official parameter counts (reference table, unfused)
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - params) < 0.01, count
    assert type(model.head).__name__ == 'SHViTClsHead'
    size = 256 if variant == 's4' else 224
    crops = [t.get('crop_size') for t in cfg.test_dataloader.dataset.pipeline]
    assert size in crops
    assert cfg.optim_wrapper.optimizer.lr == 4e-3
    assert cfg.train_cfg.max_epochs == 300


# ------------------------------------- train + test through the tools
TASKS = {
    'cls': ('cls_shvit_s4_tiny.py', 'imagenet',
            ('accuracy/top1', 'accuracy/top5')),
    'retinanet': ('det_shvit_retinanet_tiny.py', 'coco',
                  ('coco/bbox_mAP', 'coco/bbox_mAP_50')),
    'retinanet_stem': ('det_shvit_retinanet_stem_tiny.py', 'coco',
                       ('coco/bbox_mAP', 'coco/bbox_mAP_50')),
    'mask-rcnn': ('det_shvit_mask-rcnn_tiny.py', 'coco',
                  ('coco/bbox_mAP', 'coco/segm_mAP')),
    'mask-rcnn_stem': ('det_shvit_mask-rcnn_stem_tiny.py', 'coco',
                       ('coco/bbox_mAP', 'coco/segm_mAP')),
    'seg': ('seg_shvit_fpn_tiny.py', 'ade20k', ('aAcc', 'mIoU', 'mAcc')),
}


@pytest.fixture(scope='module')
def trained(synthetic, tmp_path_factory):
    """``trained(task)`` -> (config, checkpoint, cfg options): one
    4-iteration training per task, shared by the tests."""
    done = {}

    def get(task):
        if task not in done:
            config, kind, _ = TASKS[task]
            config = osp.join(CONFIGS, config)
            options = data_root_options(synthetic(kind), kind)
            work_dir = str(tmp_path_factory.mktemp(f'train_{task}'))
            # validation is what tools/test.py runs next: skip it here
            run_tool('tools/train.py', config, '--work-dir', work_dir,
                     '--no-validate', '--cfg-options', *options)
            checkpoint = osp.join(work_dir, 'iter_4.pth')
            assert osp.isfile(checkpoint)
            done[task] = (config, checkpoint, options)
        return done[task]

    return get


# cls is tested (plain and fused) by test_fused_test_matches_unfused
@pytest.mark.parametrize('task', sorted(set(TASKS) - {'cls'}))
def test_train_then_test(task, trained, tmp_path):
    config, checkpoint, options = trained(task)
    test_dir = str(tmp_path / 'test')
    run_tool('tools/test.py', config, checkpoint, '--work-dir', test_dir,
             '--cfg-options', *options)
    metrics = latest_metrics(test_dir)
    for key in TASKS[task][2]:
        assert key in metrics, f'{key} missing from {sorted(metrics)}'
        assert math.isfinite(metrics[key])


@pytest.mark.parametrize('variant', ['s1', 's2', 's3'])
def test_other_cls_recipes_train_and_test(variant, synthetic, tmp_path):
    """The S1-S3 recipes (S4's is trained above) through the tools, shrunk
    exactly as the S4 test config: that config with its first base swapped
    for this variant's real config."""
    tiny = osp.join(CONFIGS, 'cls_shvit_s4_tiny.py')
    with open(tiny) as f:
        text = f.read()
    text = text.replace(
        "'../../configs/cls/shvit-s4_in1k.py'",
        repr(osp.join(REPO, 'configs', 'cls', f'shvit-{variant}_in1k.py')))
    text = text.replace("'./_base_/tiny_shvit_cls.py'",
                        repr(osp.join(CONFIGS, '_base_',
                                      'tiny_shvit_cls.py')))
    config = str(tmp_path / f'cls_shvit_{variant}_tiny.py')
    with open(config, 'w') as f:
        f.write(text)
    options = data_root_options(synthetic('imagenet'), 'imagenet')
    work_dir = str(tmp_path / 'work')
    proc = run_tool('tools/train.py', config, '--work-dir', work_dir,
                    '--cfg-options', *options)
    from mmengine import Config
    real = Config.fromfile(
        osp.join(REPO, 'configs', 'cls', f'shvit-{variant}_in1k.py'))
    assert Config.fromfile(config).optim_wrapper.optimizer.weight_decay == \
        real.optim_wrapper.optimizer.weight_decay  # the variant's recipe
    checkpoint = osp.join(work_dir, 'iter_4.pth')
    assert osp.isfile(checkpoint), proc.stdout[-2000:]
    test_dir = str(tmp_path / 'test')
    run_tool('tools/test.py', config, checkpoint, '--work-dir', test_dir,
             '--fuse', '--cfg-options', *options)
    metrics = latest_metrics(test_dir)
    for key in TASKS['cls'][2]:
        assert math.isfinite(metrics[key])


def test_fused_test_matches_unfused(trained, tmp_path):
    """``--fuse`` folds every BN of the backbone and the head (after the
    EMA weights are swapped in) and gives the same scores and metrics."""
    config, checkpoint, options = trained('cls')
    results = {}
    for fuse in (False, True):
        name = 'fused' if fuse else 'plain'
        out = str(tmp_path / f'{name}.pkl')
        proc = run_tool('tools/test.py', config, checkpoint, '--work-dir',
                        str(tmp_path / name), '--out', out,
                        *(['--fuse'] if fuse else []), '--cfg-options',
                        *options)
        if fuse:
            assert "switch_to_deploy() on ['backbone', 'head']" in \
                proc.stdout + proc.stderr
        with open(out, 'rb') as f:
            scores = torch.stack(
                [torch.as_tensor(p['pred_score']) for p in pickle.load(f)])
        results[name] = (scores, latest_metrics(str(tmp_path / name)))
    (plain, plain_metrics), (fused, fused_metrics) = results['plain'], \
        results['fused']
    assert plain.shape == (8, 1000)
    assert torch.allclose(plain, fused, rtol=1e-4, atol=1e-6)
    for key in TASKS['cls'][2]:
        assert math.isfinite(plain_metrics[key])
        assert fused_metrics[key] == plain_metrics[key]


def test_fuse_refuses_what_it_cannot_fuse(trained, tmp_path):
    from flexvit_mm.cli import UserInputError
    from flexvit_mm.cli.test import fuse_model
    from flexvit_mm.models.backbones.shvit import SHViT
    from flexvit_mm.models.heads.shvit_head import SHViTClsHead

    model = nn.Sequential(SHViT(TINY_ARCH), SHViTClsHead(8, 32))
    with pytest.raises(UserInputError, match='training mode'):
        fuse_model(model)
    assert not model[0].deploy  # nothing was touched
    assert fuse_model(model.eval()) == ['0', '1']
    # already fused modules are skipped, not fused twice
    assert fuse_model(model) == []

    # Through the tool: a model with nothing to fuse (the tiny ResNet
    # classifier, with a checkpoint of its own: tools/test.py refuses one
    # that does not fit) exits with 2.
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    config = osp.join(CONFIGS, 'cls_imagenet.py')
    init_default_scope('mmpretrain')
    resnet = MODELS.build(Config.fromfile(config).model)
    checkpoint = str(tmp_path / 'resnet.pth')
    torch.save(dict(state_dict=resnet.state_dict()), checkpoint)
    _, _, options = trained('cls')
    proc = run_tool('tools/test.py', config, checkpoint, '--fuse',
                    '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                    *options, expect_ok=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'nothing to fuse' in proc.stderr
