"""The generated data is learnable: a few hundred CPU iterations of a small
model through tools/train.py beat chance by a clear margin.

Chance is computed from the generated files themselves: the majority class
for classification and segmentation, the best constant depth for depth.
"""
import glob
import os.path as osp

import cv2
import numpy as np

from flexvit_mm.datasets.synthetic import make_synthetic

from .conftest import CONFIGS, data_root_options, run_tool, val_metrics

BN = 'model.backbone.norm_cfg.type=BN'


def _train(config, root, work_dir, iters, batch_size, *extra):
    run_tool(
        'tools/train.py', osp.join(CONFIGS, config), '--work-dir', work_dir,
        '--cfg-options', *data_root_options(root),
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}',
        'default_hooks.logger.interval=50',
        f'train_dataloader.batch_size={batch_size}',
        'optim_wrapper.optimizer.lr=0.003', BN, *extra)
    return val_metrics(work_dir)[-1]


def test_classification_beats_chance(tmp_path):
    root = make_synthetic('imagenet', str(tmp_path / 'data'), num_train=30,
                          num_val=10, num_classes=10, img_size=(48, 48))
    metrics = _train('cls_imagenet_deterministic.py', root,
                     str(tmp_path / 'work'), 200, 16)
    chance = 100 / 10
    assert metrics['accuracy/top1'] > 4 * chance, metrics


def test_segmentation_beats_the_majority_class(tmp_path):
    root = make_synthetic('ade20k', str(tmp_path / 'data'), num_train=100,
                          num_val=20, img_size=(96, 96))
    counts = np.zeros(256)
    for path in glob.glob(osp.join(root, 'annotations/validation/*.png')):
        counts += np.bincount(cv2.imread(path, 0).ravel(), minlength=256)
    majority = 100 * counts[1:151].max() / counts[1:151].sum()
    metrics = _train('seg_ade20k.py', root, str(tmp_path / 'work'), 300, 8,
                     'model.decode_head.norm_cfg.type=BN')
    assert metrics['aAcc'] > 2 * majority, (metrics, majority)


def test_depth_beats_the_best_constant(tmp_path):
    root = make_synthetic('nyu', str(tmp_path / 'data'), num_train=60,
                          num_val=12)

    def depths(split):
        return [cv2.imread(p, cv2.IMREAD_UNCHANGED) / 1000.0
                for p in sorted(glob.glob(
                    osp.join(root, 'annotations', split, '*.png')))]

    constant = np.mean([d[d > 0].mean() for d in depths('train')])
    constant_rmse = np.mean([
        np.sqrt(((d[d > 1e-3] - constant)**2).mean())
        for d in (d[45:471, 41:601] for d in depths('test'))
    ])
    metrics = _train('depth_nyu.py', root, str(tmp_path / 'work'), 300, 8)
    assert metrics['rmse'] < 0.9 * constant_rmse, (metrics, constant_rmse)
    assert metrics['d1'] > 0.4
