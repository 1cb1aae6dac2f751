"""The generated datasets, read by the toolboxes' own dataset classes, and
the layout check that guards the tools."""
import hashlib
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from flexvit_mm.datasets import DatasetLayoutError, check_dataset_layout
from flexvit_mm.datasets.synthetic import COCO_CATEGORIES, make_synthetic

from .conftest import CONFIGS, SYNTHETIC_SIZES


def _tree_digest(root):
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            digest.update(osp.relpath(osp.join(folder, name), root).encode())
            with open(osp.join(folder, name), 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_same_seed_same_files(tmp_path):
    a = make_synthetic('ade20k', str(tmp_path / 'a'), num_train=2,
                       num_val=1, img_size=(32, 48), seed=7)
    b = make_synthetic('ade20k', str(tmp_path / 'b'), num_train=2,
                       num_val=1, img_size=(32, 48), seed=7)
    c = make_synthetic('ade20k', str(tmp_path / 'c'), num_train=2,
                       num_val=1, img_size=(32, 48), seed=8)
    assert _tree_digest(a) == _tree_digest(b) != _tree_digest(c)


def test_ade20k_reads_with_mmseg(synthetic):
    init_default_scope('mmseg')
    from mmseg.datasets import ADE20KDataset
    root = synthetic('ade20k')
    dataset = ADE20KDataset(
        data_root=root,
        data_prefix=dict(img_path='images/training',
                         seg_map_path='annotations/training'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', reduce_zero_label=True)])
    assert len(dataset) == SYNTHETIC_SIZES['ade20k']['num_train']
    sample = dataset[0]
    labels = np.unique(sample['gt_seg_map'])
    assert sample['img'].shape == (96, 96, 3)
    assert 255 in labels  # "other" (0) became ignore
    assert labels[labels != 255].max() < 150


def test_coco_stuff10k_reads_with_mmseg(synthetic):
    init_default_scope('mmseg')
    from mmseg.datasets import COCOStuffDataset
    root = synthetic('coco_stuff10k')
    dataset = COCOStuffDataset(
        data_root=root, reduce_zero_label=True,
        data_prefix=dict(img_path='images/test2014',
                         seg_map_path='annotations/test2014'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', reduce_zero_label=True)])
    assert len(dataset) == SYNTHETIC_SIZES['coco_stuff10k']['num_val']
    info = dataset.get_data_info(0)
    assert info['seg_map_path'].endswith('_labelTrainIds.png')
    labels = np.unique(dataset[0]['gt_seg_map'])
    assert labels[labels != 255].max() < 171


def test_nyu_reads_with_mmseg(synthetic):
    init_default_scope('mmseg')
    from mmseg.datasets import NYUDataset
    root = synthetic('nyu')
    dataset = NYUDataset(
        data_root=root,
        data_prefix=dict(img_path='images/train',
                         depth_map_path='annotations/train'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadDepthAnnotation',
                       depth_rescale_factor=1e-3)])
    sample = dataset[0]
    depth = sample['gt_depth_map']
    assert sample['img'].shape == (480, 640, 3) and depth.shape == (480, 640)
    raw = cv2.imread(dataset.get_data_info(0)['depth_map_path'],
                     cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    valid = depth[depth > 0]
    assert 0.5 < valid.min() and valid.max() <= 10.0
    # The category comes from the scene prefix of the file name.
    assert dataset.get_data_info(0)['category_id'] == \
        NYUDataset.METAINFO['classes'].index('bathroom')


def test_nyu_depth_follows_the_floor_geometry(synthetic):
    # Down the image the visible floor comes nearer: depth decreases
    # towards the bottom rows in (almost) every column.
    root = synthetic('nyu')
    name = sorted(os.listdir(osp.join(root, 'annotations', 'train')))[0]
    depth = cv2.imread(osp.join(root, 'annotations', 'train', name),
                       cv2.IMREAD_UNCHANGED).astype(np.float32)
    bottom, above = depth[-1], depth[-40]
    ok = (bottom > 0) & (above > 0)
    assert (bottom[ok] <= above[ok]).mean() > 0.95


def test_coco_reads_with_mmdet(synthetic):
    init_default_scope('mmdet')
    from mmdet.datasets import CocoDataset
    root = synthetic('coco')
    assert [c[1] for c in COCO_CATEGORIES] == list(
        CocoDataset.METAINFO['classes'])
    dataset = CocoDataset(
        data_root=root, ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True,
                       with_mask=True)])
    assert len(dataset) == SYNTHETIC_SIZES['coco']['num_train']
    sample = dataset[0]
    boxes = sample['gt_bboxes'].tensor.numpy()
    masks = sample['gt_masks'].to_ndarray()
    assert len(boxes) == len(masks) >= 1
    for box, mask in zip(boxes, masks):  # each mask lies inside its box
        ys, xs = np.nonzero(mask)
        assert xs.min() >= box[0] - 1 and xs.max() <= box[2] + 1
        assert ys.min() >= box[1] - 1 and ys.max() <= box[3] + 1
    with open(osp.join(root, 'annotations', 'instances_val2017.json')) as f:
        val = json.load(f)
    assert {c['id'] for c in val['categories']} == {
        c[0] for c in COCO_CATEGORIES}


def test_imagenet_reads_with_mmpretrain(synthetic):
    init_default_scope('mmpretrain')
    from mmpretrain.datasets import ImageNet
    root = synthetic('imagenet')
    size = SYNTHETIC_SIZES['imagenet']
    train = ImageNet(data_root=root, split='train')
    val = ImageNet(data_root=root, split='val')
    assert len(train) == size['num_train'] * size['num_classes']
    assert len(val) == size['num_val'] * size['num_classes']
    assert sorted({val.get_gt_labels()[i] for i in range(len(val))}) == \
        list(range(size['num_classes']))
    assert train.get_data_info(0)['img_path'].split(os.sep)[-2] == \
        'n01440764'  # the real first wnid


# ------------------------------------------------------------ layout check

def _cfg(config, root, kind=None):
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = root
    return cfg


@pytest.mark.parametrize('config,kind', [
    ('seg_ade20k.py', 'ade20k'), ('seg_cocostuff10k.py', 'coco_stuff10k'),
    ('depth_nyu.py', 'nyu'), ('det_mask-rcnn_coco.py', 'coco'),
    ('cls_imagenet.py', 'imagenet')
])
def test_layout_check_accepts_the_generated_layouts(config, kind, synthetic):
    check_dataset_layout(_cfg(config, synthetic(kind)))


def _broken_copy(root, tmp_path, remove):
    copy = str(tmp_path / 'copy')
    shutil.copytree(root, copy)
    target = osp.join(copy, remove)
    if osp.isdir(target):
        shutil.rmtree(target)
    else:
        os.remove(target)
    return copy


@pytest.mark.parametrize('config,kind,remove,expected', [
    ('seg_ade20k.py', 'ade20k', 'annotations/validation',
     'annotations/validation'),
    ('seg_cocostuff10k.py', 'coco_stuff10k',
     'annotations/train2014/COCO_train2014_000000000001_labelTrainIds.png',
     'has no label map'),
    ('depth_nyu.py', 'nyu', 'annotations/train', 'annotations/train'),
    ('det_mask-rcnn_coco.py', 'coco', 'annotations/instances_train2017.json',
     'instances_train2017.json'),
    ('cls_imagenet.py', 'imagenet', 'val', "val' (data_prefix)"),
])
def test_layout_check_names_what_is_missing(config, kind, remove, expected,
                                            synthetic, tmp_path):
    copy = _broken_copy(synthetic(kind), tmp_path, remove)
    with pytest.raises(DatasetLayoutError) as error:
        check_dataset_layout(_cfg(config, copy))
    message = str(error.value)
    assert expected in message
    assert f'--kind {kind}' in message and 'Expected layout' in message


def test_layout_check_skips_disabled_loaders_and_wrappers(synthetic,
                                                          tmp_path):
    cfg = _cfg('seg_ade20k.py', synthetic('ade20k'))
    cfg.val_dataloader = None
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', times=2, dataset=cfg.train_dataloader.dataset)
    check_dataset_layout(cfg)
    cfg.train_dataloader.dataset.dataset.data_root = str(tmp_path / 'nope')
    with pytest.raises(DatasetLayoutError, match='does not exist'):
        check_dataset_layout(cfg)
