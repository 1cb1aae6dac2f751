"""Data problems are found before anything runs: nonsense options of the
dataset generator, a generation that fails half-way, an existing dataset at
its target, and annotation maps that are missing, unreadable or of another
size than their images."""
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from mmengine import Config
from PIL import Image

from flexvit_mm.cli import run
from flexvit_mm.cli.make_synthetic import main as make_synthetic_main
from flexvit_mm.datasets import (AnnotationMismatchError, DatasetLayoutError,
                                 check_dataset_layout)
from flexvit_mm.datasets.synthetic import (GENERATORS, DatasetOutputError,
                                           make_synthetic)
from flexvit_mm.datasets.synthetic.output import MARKER

from .conftest import (CONFIGS, REPO, data_root_options, folder_digest,
                       run_tool, tool_env)

TOOL = 'tools/dataset_tools/make_synthetic.py'
TINY = ['--num-classes', '2', '--num-train', '1', '--num-val', '1',
        '--img-size', '16', '16']


def _error(proc):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    return proc.stderr


def _run_in_process(argv, capsys):
    """The tool's main through the same ``run`` wrapper as the script."""
    with pytest.raises(SystemExit) as exit_info:
        run(make_synthetic_main, argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err




def _leftovers(folder):
    return [name for name in os.listdir(folder) if '.partial-' in name]


# ----------------------------------------------------- generator options

@pytest.mark.parametrize('args,expected', [
    (['--kind', 'ade20k', '--num-classes', '0'],
     '--num-classes 0: must be from 1 to 150'),
    (['--kind', 'imagenet', '--img-size', '0', '0'],
     '--img-size 0 0: height and width must each be a whole number of '
     'pixels from 16 to 4096'),
])
def test_nonsense_options_are_refused_by_the_tool(args, expected, tmp_path):
    out = tmp_path / 'out'
    proc = run_tool(TOOL, *args, '--out', str(out), expect_ok=False)
    assert expected in _error(proc)
    assert os.listdir(tmp_path) == []  # not even the folder


@pytest.mark.parametrize('args,expected', [
    (['--kind', 'imagenet', '--num-classes', '1001'], 'from 1 to 1000'),
    (['--kind', 'coco', '--num-classes', '-3'], 'from 1 to 80'),
    (['--kind', 'coco_stuff10k', '--num-train', '0'], '--num-train 0: '
     'must be a whole number >= 1'),
    (['--kind', 'nyu', '--num-val', '-1'], '--num-val -1: must be'),
    (['--kind', 'ade20k', '--img-size', '64', '-64'], '--img-size 64 -64'),
    (['--kind', 'ade20k', '--img-size', '64', '5000'], 'from 16 to 4096'),
    (['--kind', 'imagenet', '--seed', '-1'], '--seed -1: must be a whole '
     'number >= 0'),
    (['--kind', 'nyu', '--num-classes', '3'], '3: nyu has no classes'),
])
def test_every_option_is_range_checked(args, expected, tmp_path, capsys):
    message = _run_in_process([*args, '--out', str(tmp_path / 'out')],
                              capsys)
    assert expected in message
    assert os.listdir(tmp_path) == []


# ------------------------------------------------ atomic, never overwrites

def test_interrupted_generation_leaves_nothing_behind(tmp_path):
    """Ctrl-C half-way: no dataset, no staging folder."""
    out = tmp_path / 'imagenet'
    proc = subprocess.Popen(
        [sys.executable, osp.join(REPO, TOOL), '--kind', 'imagenet', '--out',
         str(out), '--num-classes', '1', '--num-train', '100000',
         '--img-size', '16', '16'],
        cwd=REPO, env=tool_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            staged = [osp.join(tmp_path, name)
                      for name in _leftovers(tmp_path)]
            # Interrupt once images are being written.
            if staged and any(files for _, _, files in os.walk(staged[0])):
                break
            time.sleep(0.1)
        else:
            pytest.fail('generation did not start within 120 s')
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert os.listdir(tmp_path) == []


def test_failing_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(out, **kwargs):
        os.makedirs(osp.join(out, 'train'))
        open(osp.join(out, 'train', 'half.JPEG'), 'w').close()
        raise RuntimeError('disk full')

    monkeypatch.setitem(GENERATORS, 'imagenet', broken)
    with pytest.raises(RuntimeError, match='disk full'):
        make_synthetic('imagenet', str(tmp_path / 'imagenet'))
    assert os.listdir(tmp_path) == []


def test_existing_generated_dataset_is_replaced_only_with_force(
        tmp_path, capsys):
    out = str(tmp_path / 'imagenet')
    make_synthetic('imagenet', out, num_train=1, num_val=1, num_classes=2,
                   img_size=(16, 16))
    before = folder_digest(out)
    message = _run_in_process(['--kind', 'imagenet', '--out', out, *TINY],
                              capsys)
    assert 'already holds a synthetic imagenet dataset' in message
    assert 'num_train=1' in message and '--force' in message
    assert folder_digest(out) == before

    proc = run_tool(TOOL, '--kind', 'imagenet', '--out', out, *TINY[:2],
                    '--num-train', '3', '--num-val', '1', '--img-size', '16',
                    '16', '--force')
    assert 'Replaced the synthetic imagenet dataset' in proc.stdout
    with open(osp.join(out, 'meta', 'train.txt')) as f:
        assert len(f.read().split('\n')) - 1 == 2 * 3
    assert MARKER in os.listdir(out)
    assert sorted(os.listdir(tmp_path)) == ['imagenet']  # no leftovers


def test_other_files_are_never_replaced_even_with_force(tmp_path, capsys):
    (tmp_path / 'keep.txt').write_text('mine')
    message = _run_in_process(
        ['--kind', 'imagenet', '--out', str(tmp_path), *TINY, '--force'],
        capsys)
    assert "'keep.txt'" in message and 'did not generate' in message
    assert os.listdir(tmp_path) == ['keep.txt']
    # ADE20K's root is a subfolder: other files next to it are fine.
    root = make_synthetic('ade20k', str(tmp_path), num_train=1, num_val=1,
                          img_size=(16, 16))
    assert sorted(os.listdir(tmp_path)) == ['ADEChallengeData2016',
                                            'keep.txt']
    assert root == osp.join(str(tmp_path), 'ADEChallengeData2016')


def test_output_under_a_file_is_refused(tmp_path):
    (tmp_path / 'file').write_text('mine')
    with pytest.raises(DatasetOutputError, match='Cannot write a dataset'):
        make_synthetic('nyu', str(tmp_path / 'file' / 'nyu'), num_train=1,
                       num_val=1, img_size=(16, 16))
    with pytest.raises(DatasetOutputError, match='is not a folder'):
        make_synthetic('nyu', str(tmp_path / 'file'))
    assert os.listdir(tmp_path) == ['file']


# ------------------------------------------------------ annotation checks

def _copy(root, tmp_path):
    copy = str(tmp_path / 'data')
    shutil.copytree(root, copy)
    return copy


def _write_label(path, height, width, dtype):
    """A label map in the dataset's real format (uint8 classes, uint16 mm
    depth), as its converter writes it."""
    assert cv2.imwrite(path, np.ones((height, width), dtype))


def _config(config, root):
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = root
    return cfg


def test_wrong_size_label_map_stops_training_before_it_starts(
        synthetic, tmp_path):
    root = _copy(synthetic('ade20k'), tmp_path)
    image = osp.join(root, 'images/training/ADE_train_00000003.jpg')
    label = osp.join(root, 'annotations/training/ADE_train_00000003.png')
    _write_label(label, 64, 80, np.uint8)
    work_dir = tmp_path / 'work'
    proc = run_tool('tools/train.py', osp.join(CONFIGS, 'seg_ade20k.py'),
                    '--work-dir', str(work_dir), '--cfg-options',
                    *data_root_options(root), expect_ok=False)
    message = _error(proc)
    assert f"image           '{image}' is 96x96 (height x width)" in message
    assert f"annotation map  '{label}' is 64x80" in message
    assert 'train_dataloader' in message and '1 of 8' in message
    assert 'at its image\'s size' in message
    assert not work_dir.exists()


def test_wrong_size_depth_map_in_the_val_split(synthetic, tmp_path):
    """The issue's case: a map that would only fail in validation."""
    root = _copy(synthetic('nyu'), tmp_path)
    labels = sorted(os.listdir(osp.join(root, 'annotations/test')))
    label = osp.join(root, 'annotations/test', labels[-1])
    _write_label(label, 240, 320, np.uint16)
    proc = run_tool('tools/train.py', osp.join(CONFIGS, 'depth_nyu.py'),
                    '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                    *data_root_options(root), expect_ok=False)
    message = _error(proc)
    assert 'The NYUv2 depth dataset of val_dataloader' in message
    assert f"'{label}' is 240x320" in message and '480x640' in message


def test_missing_unreadable_and_rotated_label_maps(synthetic, tmp_path):
    root = _copy(synthetic('coco_stuff10k'), tmp_path)
    cfg = _config('seg_cocostuff10k.py', root)
    labels = osp.join(root, 'annotations/train2014')
    last = sorted(os.listdir(labels))[-1]
    # The last image, not the first: every pair is checked.
    os.rename(osp.join(labels, last), osp.join(tmp_path, last))
    with pytest.raises(DatasetLayoutError) as error:
        check_dataset_layout(cfg)
    assert f"has no label map '{osp.join(labels, last)}'" in str(error.value)
    os.rename(osp.join(tmp_path, last), osp.join(labels, last))

    with open(osp.join(labels, last), 'wb') as f:
        f.write(b'not a png')
    with pytest.raises(AnnotationMismatchError,
                       match='cannot be read as an image'):
        check_dataset_layout(cfg)

    # A photo taken upright: stored 96x48 with EXIF "rotate 90", decoded
    # (and labelled) as 48x96 by the toolboxes.
    image = osp.join(root, 'images/train2014', last.replace(
        '_labelTrainIds.png', '.jpg'))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new('RGB', (96, 48)).save(image, exif=exif.tobytes())
    _write_label(osp.join(labels, last), 96, 48, np.uint8)
    check_dataset_layout(cfg)
    _write_label(osp.join(labels, last), 48, 96, np.uint8)
    with pytest.raises(AnnotationMismatchError, match='is 48x96'):
        check_dataset_layout(cfg)
