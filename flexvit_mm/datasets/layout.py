"""Check a config's dataset folders before training starts.

A wrong data root otherwise shows up as an empty dataset, a ``KeyError``
deep inside a transform, or a crash minutes into a run. This check reads
only the config and the file system, and says what was expected where.
"""
import os
import os.path as osp
from dataclasses import dataclass

from ..errors import FlexvitError
from .annotations import (AnnotationMismatchError, list_pairs,
                          mismatch_message, missing_labels, size_mismatches)


class DatasetLayoutError(FlexvitError, FileNotFoundError):
    """A dataset folder does not have the layout its config expects."""


@dataclass(frozen=True)
class KnownLayout:
    name: str
    tree: str
    prepare: str
    synthetic_kind: str
    img_suffix: str = '.jpg'
    seg_map_suffix: str = '.png'


KNOWN_LAYOUTS = {
    'ADE20KDataset':
    KnownLayout(
        'ADE20K', 'data/ade/ADEChallengeData2016/\n'
        '  images/{training,validation}/ADE_*.jpg\n'
        '  annotations/{training,validation}/ADE_*.png  (uint8, 0 = other)',
        'unzip ADEChallengeData2016.zip into data/ade/ (docs/datasets.md)',
        'ade20k'),
    'COCOStuffDataset':
    KnownLayout(
        'COCO-Stuff-10K', 'data/coco_stuff10k/\n'
        '  images/{train2014,test2014}/*.jpg\n'
        '  annotations/{train2014,test2014}/*_labelTrainIds.png',
        'convert cocostuff-10k-v1.1 with mmseg\'s '
        'tools/dataset_converters/coco_stuff10k.py (docs/datasets.md)',
        'coco_stuff10k',
        seg_map_suffix='_labelTrainIds.png'),
    'NYUDataset':
    KnownLayout(
        'NYUv2 depth', 'data/nyu/\n'
        '  images/{train,test}/<scene>_<id>.jpg\n'
        '  annotations/{train,test}/<scene>_<id>.png  (uint16, millimetres)',
        'convert the BTS NYUv2 archive with mmseg\'s '
        'tools/dataset_converters/nyu.py (docs/datasets.md)', 'nyu'),
    'CocoDataset':
    KnownLayout(
        'COCO 2017', 'data/coco/\n'
        '  train2017/*.jpg, val2017/*.jpg\n'
        '  annotations/instances_{train,val}2017.json',
        'unzip train2017.zip, val2017.zip and '
        'annotations_trainval2017.zip into data/coco/ (docs/datasets.md)',
        'coco'),
    'ImageNet':
    KnownLayout(
        'ImageNet-1K', 'data/imagenet/\n'
        '  train/<wnid>/*.JPEG\n'
        '  val/*.JPEG\n'
        '  meta/{train,val}.txt  ("<path> <label>" per line)',
        'extract ILSVRC2012 into data/imagenet/ (docs/datasets.md)',
        'imagenet',
        img_suffix='.JPEG'),
}
_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif',
                     '.tiff', '.webp')


def _dataset_configs(cfg):
    """Yield the leaf dataset configs inside dataset wrappers."""
    if cfg is None:
        return
    if 'datasets' in cfg:  # ConcatDataset
        for sub in cfg['datasets']:
            yield from _dataset_configs(sub)
    elif 'dataset' in cfg:  # RepeatDataset, ClassBalancedDataset, ...
        yield from _dataset_configs(cfg['dataset'])
    else:
        yield cfg


def _is_remote(path):
    return '://' in str(path) or str(path).startswith('s3:')


def _has_file(folder, suffix):
    """Whether ``folder`` (recursively) holds a file ending in ``suffix``
    (case-insensitive; any image extension when suffix is None)."""
    for _, _, files in os.walk(folder):
        for name in files:
            lower = name.lower()
            if (suffix is None and lower.endswith(_IMAGE_EXTENSIONS)) or (
                    suffix is not None and lower.endswith(suffix.lower())):
                return True
    return False


_LABEL_KEYS = ('seg_map_path', 'depth_map_path')


def _problems(dataset_cfg, layout):
    """What is missing, as a list of human-readable lines, and the
    (image, annotation map) pairs of an mmseg dataset whose files all exist
    (empty for other datasets)."""
    data_root = dataset_cfg.get('data_root') or ''
    if data_root and not osp.isdir(data_root):
        return [f'data_root {data_root!r} does not exist or is not a '
                'folder'], []

    def resolve(path):
        return path if osp.isabs(path) else osp.join(data_root, path)

    problems = []
    ann_file = dataset_cfg.get('ann_file') or ''
    if ann_file and not osp.isfile(resolve(ann_file)):
        problems.append(f'annotation file {resolve(ann_file)!r} (ann_file) '
                        'does not exist')

    prefix = dataset_cfg.get('data_prefix') or ''
    if not prefix and dataset_cfg.get('split'):  # mmpretrain's `split=`
        prefix = dataset_cfg['split']
    prefixes = prefix.items() if isinstance(prefix, dict) else [('', prefix)]
    img_suffix = dataset_cfg.get('img_suffix', layout and layout.img_suffix)
    seg_suffix = dataset_cfg.get(
        'seg_map_suffix',
        dataset_cfg.get('depth_map_suffix', layout
                        and layout.seg_map_suffix))
    folders = {}
    for key, value in prefixes:
        folder = resolve(value) if value else data_root
        where = f'data_prefix.{key}' if key else 'data_prefix'
        if not folder:
            continue
        if not osp.isdir(folder):
            problems.append(f'folder {folder!r} ({where}) does not exist')
            continue
        suffix = seg_suffix if key in _LABEL_KEYS else img_suffix
        if ann_file and key not in _LABEL_KEYS:
            suffix = None  # the annotation file names the images
        if not _has_file(folder, suffix):
            what = f'*{suffix}' if suffix else 'image'
            problems.append(f'folder {folder!r} ({where}) has no {what} '
                            'files')
            continue
        folders[key] = folder
    if problems:
        return problems, []

    # mmseg pairs each image with the annotation map of the same stem.
    label_keys = [k for k in _LABEL_KEYS if k in folders]
    if 'img_path' not in folders or len(label_keys) != 1 or not (
            img_suffix and seg_suffix):
        return problems, []
    label_key = label_keys[0]
    stems = None
    if ann_file:
        if str(dataset_cfg.get('type', '')).endswith('NYUDataset'):
            # NYUDataset takes a line's own extension as the image suffix;
            # these pairs are left to it.
            return problems, []
        with open(resolve(ann_file)) as f:
            stems = [line.strip() for line in f if line.strip()]
    pairs = list_pairs(folders['img_path'], img_suffix, folders[label_key],
                       seg_suffix, stems)
    missing = missing_labels(pairs)
    if missing:
        first = missing[0]
        if osp.isfile(first.image):
            line = (f'image {first.image!r} has no label map '
                    f'{first.label!r} (data_prefix.{label_key})')
        else:  # only an ann_file can name an image that is not there
            line = (f'image {first.image!r}, named in ann_file, does not '
                    'exist')
        if len(missing) > 1:
            line += (f'; {len(missing) - 1} more of the {len(pairs)} pairs '
                     'miss a file')
        problems.append(line)
    return problems, pairs


def check_dataset_layout(cfg, dataloader_keys=('train_dataloader',
                                                'val_dataloader',
                                                'test_dataloader')):
    """Raise if a configured dataset is missing folders or files its dataset
    class will read, or, for segmentation and depth datasets, if an image
    has no annotation map of its size.

    Args:
        cfg (mmengine.Config): A full config.
        dataloader_keys (Sequence[str]): Dataloaders to check; ``None``
            entries (e.g. after ``--no-validate``) are skipped.

    Raises:
        DatasetLayoutError: With the missing paths, the expected layout, how
            to prepare the real data and how to generate a synthetic copy.
        AnnotationMismatchError: With the first image whose annotation map
            has another size or cannot be read (both paths and sizes), how
            many pairs are bad, and the fix.
    """
    checked = set()  # the val and test loaders often read the same files
    for key in dataloader_keys:
        loader = cfg.get(key)
        if not loader:
            continue
        for dataset_cfg in _dataset_configs(loader.get('dataset')):
            if _is_remote(dataset_cfg.get('data_root', '')) or \
                    dataset_cfg.get('backend_args'):
                continue
            dataset_type = str(dataset_cfg.get('type', '')).split('.')[-1]
            layout = KNOWN_LAYOUTS.get(dataset_type)
            problems, pairs = _problems(dataset_cfg, layout)
            if problems:
                raise DatasetLayoutError(
                    _message(key, dataset_type, dataset_cfg, layout,
                             problems))
            if not pairs or tuple(pairs) in checked:
                continue
            checked.add(tuple(pairs))
            mismatches = size_mismatches(pairs)
            if mismatches:
                name = layout.name if layout else dataset_type
                raise AnnotationMismatchError(
                    mismatch_message(f'The {name} dataset of {key}',
                                     mismatches, len(pairs),
                                     layout and layout.prepare))


def _message(key, dataset_type, dataset_cfg, layout, problems):
    name = layout.name if layout else dataset_type
    lines = [f'The {name} dataset of {key} does not have the expected '
             'layout:']
    lines += [f'  - {p}' for p in problems]
    if layout:
        lines += ['Expected layout:'] + [
            '  ' + line for line in layout.tree.splitlines()
        ]
        lines.append(f'To prepare the real data: {layout.prepare}.')
        out = osp.dirname(dataset_cfg.get('data_root', '').rstrip('/')) \
            if layout.synthetic_kind == 'ade20k' else dataset_cfg.get(
                'data_root', 'data/...')
        lines.append(
            'To generate a small synthetic copy: python '
            'tools/dataset_tools/make_synthetic.py --kind '
            f'{layout.synthetic_kind} --out {out}')
    lines.append(f'To read it from elsewhere: --cfg-options '
                 f'{key}.dataset.data_root=PATH')
    return '\n'.join(lines)
