"""Every task through the real tools/train.py and tools/test.py on its
generated dataset: train a few iterations, then evaluate the checkpoint."""
import glob
import math
import os.path as osp
import pickle

import pytest

from .conftest import (CONFIGS, data_root_options, latest_metrics,
                       run_tool)

TASKS = {
    'ade20k': ('seg_ade20k.py', 'ade20k', ('aAcc', 'mIoU', 'mAcc')),
    'coco_stuff10k':
    ('seg_cocostuff10k.py', 'coco_stuff10k', ('aAcc', 'mIoU', 'mAcc')),
    'nyu': ('depth_nyu.py', 'nyu', ('d1', 'abs_rel', 'rmse', 'silog')),
    'coco': ('det_mask-rcnn_coco.py', 'coco',
             ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP',
              'coco/segm_mAP_50')),
    'imagenet': ('cls_imagenet.py', 'imagenet',
                 ('accuracy/top1', 'accuracy/top5')),
}


@pytest.mark.parametrize('task', sorted(TASKS))
def test_train_then_test(task, synthetic, tmp_path):
    config, kind, metric_keys = TASKS[task]
    config = osp.join(CONFIGS, config)
    root = synthetic(kind)
    work_dir = str(tmp_path / 'work')
    options = data_root_options(root, kind)

    run_tool('tools/train.py', config, '--work-dir', work_dir,
             '--cfg-options', *options)
    checkpoint = osp.join(work_dir, 'iter_4.pth')
    assert osp.isfile(checkpoint)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('iter_4.pth')

    test_dir = str(tmp_path / 'test')
    out = str(tmp_path / ('preds' if kind in ('ade20k', 'coco_stuff10k',
                                              'nyu') else 'preds.pkl'))
    run_tool('tools/test.py', config, checkpoint, '--work-dir', test_dir,
             '--out', out, '--cfg-options', *options)
    metrics = latest_metrics(test_dir)
    for key in metric_keys:
        assert key in metrics, f'{key} missing from {sorted(metrics)}'
        assert math.isfinite(metrics[key])

    num_val = {'imagenet': 8}.get(kind, 2)
    if out.endswith('.pkl'):
        with open(out, 'rb') as f:
            predictions = pickle.load(f)
        assert len(predictions) == num_val
    else:
        assert len(glob.glob(osp.join(out, '*.png'))) == num_val


def test_show_dir_and_tta_for_segmentation(synthetic, tmp_path):
    config = osp.join(CONFIGS, 'seg_ade20k.py')
    options = data_root_options(synthetic('ade20k'))
    work_dir = str(tmp_path / 'work')
    run_tool('tools/train.py', config, '--work-dir', work_dir,
             '--no-validate', '--cfg-options', 'train_cfg.max_iters=1',
             'default_hooks.checkpoint.interval=1', *options)
    show_dir = str(tmp_path / 'show')
    run_tool('tools/test.py', config, osp.join(work_dir, 'iter_1.pth'),
             '--work-dir', str(tmp_path / 'test'), '--show-dir', show_dir,
             '--tta', '--cfg-options', *options)
    painted = glob.glob(osp.join(show_dir, '**', '*.png'), recursive=True)
    assert len(painted) == 2  # every validation image
    assert 'mIoU' in latest_metrics(str(tmp_path / 'test'))
