"""NYUv2 depth with SN-Netv2: the DPT depth head, the fixed depth estimator
and metric, the recipe's schedules, and training + a stitch sweep through
the real tools."""
import json
import math
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

import flexvit_mm  # noqa: F401  (registers the modules)
from flexvit_mm.seg import (DPTDepthHead, FlipDepthEstimator,
                            SelectableDepthMetric)

from .conftest import CONFIGS, REPO, data_root_options, run_tool

TINY_CONFIG = osp.join(CONFIGS, 'depth_snnetv2_tiny.py')
EMBED = 32


def _head(**kwargs):
    cfg = dict(in_channels=(EMBED, ) * 4, channels=16, embed_dims=EMBED,
               post_process_channels=[4, 8, 16, 32], depth_channels=8,
               readout_type='project', max_depth=10.0)
    cfg.update(kwargs)
    return DPTDepthHead(**cfg).eval()


def _vit_outputs(batch=2, grid=(4, 6), cls=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    maps = [torch.randn(batch, EMBED, *grid, generator=gen)
            for _ in range(4)]
    if not cls:
        return maps
    return [[m, torch.randn(batch, EMBED, generator=gen)] for m in maps]


# ------------------------------------------------------------------ head
@torch.no_grad()
def test_dpt_head_shapes_readouts_and_depth_range():
    # Four stride-16 maps of a 64x96 image: depth at the image resolution.
    # The sigmoid output is strictly monotonic in the network's output, so
    # any change inside shows.
    for readout in ('project', 'add', 'ignore'):
        head = _head(readout_type=readout, depth_act='sigmoid')
        out = head(_vit_outputs())
        assert out.shape == (2, 1, 64, 96)
        assert 0 < out.min() and out.max() <= head.max_depth
        # The cls token is read out, except with 'ignore'.
        other_cls = [[m, c + 1] for m, c in _vit_outputs()]
        changed = not torch.allclose(head(other_cls), out)
        assert changed == (readout != 'ignore'), readout
    # Plain maps (no cls tokens) work with 'ignore' only.
    head = _head(readout_type='ignore', depth_act='sigmoid')
    out = head(_vit_outputs(cls=False))
    assert out.shape == (2, 1, 64, 96)
    assert 0 < out.min() and out.max() <= head.max_depth
    with pytest.raises(ValueError, match='output_cls_token'):
        _head(readout_type='project')(_vit_outputs(cls=False))
    # Pyramid level i widened by 2**i (mmseg's DPTHead fails on this).
    head = _head(expand_channels=True)
    assert head.post_process_channels == [4, 16, 64, 256]
    assert head(_vit_outputs()).shape == (2, 1, 64, 96)

    # The official relu(x) + min_depth: never below min_depth; clamped to
    # [min_depth, max_depth] at test time. Push the raw output far above and
    # far below the range.
    metas = [dict(img_shape=(64, 96), pad_shape=(64, 96))] * 2
    for cls in (True, False):
        head = _head(readout_type='project' if cls else 'ignore')
        inputs = _vit_outputs(cls=cls)
        assert head(inputs).min() >= head.min_depth > 0
        head.conv_depth[-1].bias.fill_(100.)
        assert head(inputs).min() > head.max_depth
        pred = head.predict(inputs, metas, None)
        assert pred.shape == (2, 1, 64, 96)
        assert pred.max() <= head.max_depth
        assert torch.allclose(pred, torch.full_like(pred, head.max_depth))
        head.conv_depth[-1].bias.fill_(-100.)
        pred = head.predict(inputs, metas, None)
        assert pred.min() > 0
        assert torch.allclose(pred, torch.full_like(pred, head.min_depth))


def test_dpt_head_loss_on_ground_truth_resolution():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    head = _head(depth_act='sigmoid').train()
    samples = []
    for value in (2.0, 3.0):
        sample = SegDataSample()
        # Ground truth smaller than the prediction (48x60 vs 64x96).
        sample.gt_depth_map = PixelData(data=torch.full((1, 48, 60), value))
        samples.append(sample)
    losses = head.loss(_vit_outputs(), samples, None)
    assert set(losses) == {'loss_silog'}
    loss = losses['loss_silog']
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert head.reassemble_blocks.projects[0].conv.weight.grad.abs().sum() > 0


def test_dpt_head_rejects_inconsistent_arguments():
    with pytest.raises(ValueError, match='four'):
        _head(in_channels=(EMBED, ) * 3)
    with pytest.raises(ValueError, match='embed_dims'):
        _head(in_channels=(EMBED, EMBED, EMBED, 16))
    with pytest.raises(ValueError, match='depth_act'):
        _head(depth_act='exp')


# ------------------------------------------------------------- estimator
class RampHead(nn.Module):
    """Depth = first input channel + a 0..1 ramp over the columns of the
    image it is given: depends on the position inside the window."""

    def predict(self, inputs, batch_img_metas, test_cfg):
        width = inputs.shape[-1]
        return inputs[:, :1] + torch.linspace(0, 1, width)


def _estimator(**test_cfg):
    from mmseg.registry import MODELS
    model = MODELS.build(dict(
        type='FlipDepthEstimator',
        backbone=dict(
            type='SNNetv2',
            anchors=[
                dict(model_name='deit3_small_patch16_224', img_size=32,
                     patch_size=8, embed_dim=16, depth=2, num_heads=1),
                dict(model_name='deit3_small_patch16_224', img_size=32,
                     patch_size=8, embed_dim=16, depth=4, num_heads=1),
            ],
            out_indices=(0, 1, 2, 3)),
        decode_head=dict(
            type='DPTDepthHead', in_channels=(16, ) * 4, embed_dims=16,
            channels=8, post_process_channels=[2, 2, 2, 2]),
        test_cfg=test_cfg))
    assert isinstance(model, FlipDepthEstimator)
    # Identity backbone + ramp head: a deterministic, position-dependent
    # "network" whose whole, sliding and flipped results are known.
    model.backbone = nn.Identity()
    model.decode_head = RampHead()
    return model.eval()


def _metas(shape):
    return [dict(ori_shape=shape, img_shape=shape, pad_shape=shape)]


@torch.no_grad()
def test_slide_mode_slides_and_flip_averages():
    from mmseg.models.segmentors import DepthEstimator
    x = torch.rand(1, 3, 20, 36)
    ramp = torch.linspace(0, 1, 36)
    whole = _estimator(mode='whole').inference(x, _metas((20, 36)))
    assert torch.allclose(whole, x[:, :1] + ramp)

    # 16x16 windows, stride (8, 10): rows 0:16, 4:20; columns 0:16, 10:26,
    # 20:36 (the last window of a row/column ends at the border).
    model = _estimator(mode='slide', crop_size=(16, 16), stride=(8, 10))
    slide = model.inference(x, _metas((20, 36)))
    total = torch.zeros(1, 1, 20, 36)
    count = torch.zeros(1, 1, 20, 36)
    for top in (0, 4):
        for left in (0, 10, 20):
            window = (slice(None), slice(None), slice(top, top + 16),
                      slice(left, left + 16))
            total[window] += x[window][:, :1] + torch.linspace(0, 1, 16)
            count[window] += 1
    assert torch.allclose(slide, total / count, atol=1e-6)
    assert not torch.allclose(slide, whole, atol=1e-3)
    # mmseg's own dispatch overwrites the slide result by whole inference
    # (open-mmlab/mmsegmentation#3655): what this class fixes.
    assert torch.allclose(
        DepthEstimator.inference(model, x, _metas((20, 36))), whole)

    # Flip test: the ramp and its mirror average to 0.5 everywhere, for
    # whole images and for a mirror-symmetric window grid alike.
    for cfg in (dict(mode='whole'),
                dict(mode='slide', crop_size=(16, 16), stride=(8, 10))):
        flipped = _estimator(flip=True, **cfg).inference(x, _metas((20, 36)))
        assert torch.allclose(flipped, x[:, :1] + 0.5, atol=1e-6), cfg

    with pytest.raises(ValueError, match='crop_size and stride'):
        _estimator(mode='slide')
    with pytest.raises(ValueError, match='already flips'):
        _estimator(mode='slide_flip', crop_size=(16, 16), stride=(8, 8),
                   flip=True)


# ----------------------------------------------------------------- metric
def test_selectable_depth_metric_reports_exactly_the_chosen_metrics():
    from mmseg.evaluation.metrics import DepthMetric
    with pytest.raises(TypeError):  # the mmseg bug this class fixes
        DepthMetric(depth_metrics=['rmse', 'd1'])
    metric = SelectableDepthMetric(depth_metrics=['rmse', 'd1'],
                                   min_depth_eval=1e-3, max_depth_eval=10.)
    gt = torch.linspace(1, 5, 100).reshape(1, 10, 10)
    # 0.5 m too far everywhere: rmse 0.5; within 25 % iff gt > 2 m.
    metric.process({}, [dict(pred_depth_map=dict(data=gt + 0.5),
                             gt_depth_map=dict(data=gt))])
    results = metric.evaluate(1)
    assert list(results) == ['rmse', 'd1']
    assert results['rmse'] == pytest.approx(0.5, abs=1e-5)
    assert results['d1'] == pytest.approx((gt > 2).float().mean().item())
    with pytest.raises(ValueError, match='unknown'):
        SelectableDepthMetric(depth_metrics=['rmse', 'accuracy'])


# --------------------------------------------------------------- recipe
def test_recipe_schedules_follow_the_official_one_cycle():
    """lr and Adam beta1 of configs/depth/snnetv2_nyu.py over a short
    "epoch", as mmcv's OneCycle lr and momentum hooks would set them."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = Config.fromfile(TINY_CONFIG)
    full = Config.fromfile(osp.join(REPO, 'configs', 'depth',
                                    'snnetv2_nyu.py'))
    assert cfg.param_scheduler == full.param_scheduler
    assert cfg.optim_wrapper == full.optim_wrapper
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {names[id(g['params'][0])]: g
              for g in wrapper.optimizer.param_groups}
    # A parameter takes its longest matching custom key only (mmcv 1.x did
    # the same): backbone position embeddings and cls tokens get decay 0,
    # backbone norms match 'backbone' before 'norm'.
    for name in ('backbone.anchors.0.pos_embed',
                 'backbone.anchors.1.cls_token'):
        assert groups[name]['weight_decay'] == 0
        assert groups[name]['lr'] == pytest.approx(2e-5)
    for name in ('backbone.anchors.1.blocks.0.norm1.weight',
                 'backbone.anchors.1.blocks.0.attn.qkv.weight'):
        assert groups[name]['weight_decay'] == 0.01
        assert groups[name]['lr'] == pytest.approx(2e-6)
    head = groups['decode_head.project.conv.weight']
    assert head['lr'] == pytest.approx(2e-5)

    epoch_length, epochs = 10, cfg.max_epochs
    schedulers = []
    for sched in cfg.param_scheduler:
        sched = dict(sched)
        sched.pop('convert_to_iter_based')
        cls = PARAM_SCHEDULERS.get(sched.pop('type'))
        schedulers.append(cls.build_iter_from_epoch(
            wrapper, epoch_length=epoch_length, **sched))
    lrs, betas = [], []
    for _ in range(epoch_length * epochs):
        group = wrapper.optimizer.param_groups[0]
        lrs.append([g['lr'] for g in wrapper.optimizer.param_groups])
        betas.append(group['betas'][0])
        for scheduler in schedulers:
            scheduler.step()
    total = epoch_length * epochs
    peak = int(0.3 * total) - 1
    # Every group follows the same one-cycle lr (lr_mult is inert).
    assert all(len(set(step)) == 1 for step in lrs)
    lr = [step[0] for step in lrs]
    assert lr[0] == pytest.approx(2e-5 / 25)
    assert lr[peak] == pytest.approx(2e-5)
    assert lr[-1] == pytest.approx(2e-5 / 25 / 100)
    assert betas[0] == pytest.approx(0.95)
    assert min(betas) == pytest.approx(0.85, abs=1e-4)
    assert abs(betas.index(min(betas)) - peak) <= 1
    assert betas[-1] == pytest.approx(0.95, abs=1e-4)


def test_recipe_train_pipeline_crops_and_rotates_depth_with_zero_border(
        synthetic):
    """The recipe's NYU crop and rotation on a generated 480x640 frame: the
    depth map's new border must read "no depth" (0), not mmseg's 255."""
    import numpy as np
    from mmcv.transforms import Compose
    from mmseg.registry import TRANSFORMS
    full = Config.fromfile(osp.join(REPO, 'configs', 'depth',
                                    'snnetv2_nyu.py'))
    steps = []
    for step in full.train_pipeline[:4]:  # load x2, crop, rotate
        step = dict(step)
        if step['type'] == 'RandomRotate':  # always, by the largest angle
            step.update(prob=1.0, degree=(2.5, 2.5))
        steps.append(TRANSFORMS.build(step))
    assert [type(t).__name__ for t in steps] == [
        'LoadImageFromFile', 'LoadDepthAnnotation', 'NYUValidCrop',
        'RandomRotate']
    root = synthetic('nyu')
    name = sorted(os.listdir(osp.join(root, 'images', 'train')))[0]
    results = Compose(steps)(dict(
        img_path=osp.join(root, 'images', 'train', name),
        depth_map_path=osp.join(root, 'annotations', 'train',
                                name.replace('.jpg', '.png')),
        seg_fields=[], reduce_zero_label=False))
    depth = results['gt_depth_map']
    assert results['img'].shape[:2] == depth.shape == (427, 565)
    assert results['img_shape'] == (427, 565)
    assert depth.max() <= 10.0  # metres, no 255 padding anywhere
    for corner in (depth[0, 0], depth[0, -1], depth[-1, 0], depth[-1, -1]):
        assert corner == 0
    assert (depth > 0).mean() > 0.9

    color = TRANSFORMS.build(dict(full.train_pipeline[-2], prob=1.0))
    img = results['img'].copy()
    out = color(dict(img=img.copy()))['img']
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 255
    assert not np.allclose(out, img)


# ------------------------------------------------------------ end to end
def test_train_and_sweep_every_stitch_on_nyu(synthetic, tmp_path):
    from flexvit_mm.models.stitching.space import StitchingSpace
    options = data_root_options(synthetic('nyu'))
    work_dir = str(tmp_path / 'work')
    run_tool('tools/train.py', TINY_CONFIG, '--work-dir', work_dir,
             '--cfg-options', *options)
    # The recipe validates every epoch and keeps the best RMSE.
    assert osp.isfile(osp.join(work_dir, 'best_rmse_epoch_1.pth'))
    sweep_dir = str(tmp_path / 'sweep')
    run_tool('tools/test.py', TINY_CONFIG,
             osp.join(work_dir, 'epoch_1.pth'), '--work-dir', sweep_dir,
             '--stitch-id', 'all', '--flops-shape', '64', '64',
             '--cfg-options', *options)
    with open(osp.join(sweep_dir, 'stitches.json')) as f:
        rows = json.load(f)
    cfg = Config.fromfile(TINY_CONFIG)
    depths = [a['depth'] for a in cfg.model.backbone.anchors]
    assert [r['id'] for r in rows] == list(StitchingSpace(depths).stitch_ids)
    for row in rows:
        assert math.isfinite(row['rmse']) and row['rmse'] > 0, row
        assert 0 <= row['d1'] <= 1, row
    # Each stitch was really evaluated with its own route.
    assert len({round(r['rmse'], 6) for r in rows}) > 1
