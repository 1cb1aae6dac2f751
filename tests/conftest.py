"""Shared fixtures: generated datasets and a runner for the real tools."""
import glob
import hashlib
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'tests', 'configs')

# Each test process uses one core; pytest-xdist runs two of them.
torch.set_num_threads(1)

# Small sizes: enough for every dataset class, metric and sampler to work.
SYNTHETIC_SIZES = {
    'ade20k': dict(num_train=8, num_val=2, img_size=(96, 96)),
    'coco_stuff10k': dict(num_train=6, num_val=2, img_size=(96, 96)),
    'nyu': dict(num_train=6, num_val=2, img_size=(480, 640)),
    'coco': dict(num_train=6, num_val=2, img_size=(128, 128)),
    'imagenet': dict(num_train=3, num_val=1, img_size=(48, 48),
                     num_classes=8),
}


@pytest.fixture(scope='session')
def synthetic(tmp_path_factory):
    """``synthetic(kind)`` -> data root of a small generated dataset, made
    once per test process."""
    from flexvit_mm.datasets.synthetic import make_synthetic
    roots = {}

    def get(kind):
        if kind not in roots:
            out = str(tmp_path_factory.mktemp(f'data_{kind}'))
            roots[kind] = make_synthetic(kind, out, **SYNTHETIC_SIZES[kind])
        return roots[kind]

    return get


def data_root_options(root, kind=None):
    """``--cfg-options`` pointing every dataloader (and COCO's evaluators)
    at ``root``."""
    options = [
        f'{split}_dataloader.dataset.data_root={root}'
        for split in ('train', 'val', 'test')
    ]
    if kind == 'coco':
        ann = osp.join(root, 'annotations', 'instances_val2017.json')
        options += [f'val_evaluator.ann_file={ann}',
                    f'test_evaluator.ann_file={ann}']
    return options


def tool_env(**extra):
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS='1',
        PYTHONWARNINGS='ignore',
        PYTHONPATH=REPO + os.pathsep + env.get('PYTHONPATH', ''))
    env.update(extra)
    return env


def run_tool(*args, expect_ok=True, timeout=600, env=None):
    """Run a script of ``tools/`` (or ``-c`` code) with this interpreter.

    Returns:
        subprocess.CompletedProcess: with text stdout and stderr.
    """
    cmd = [sys.executable] + [
        osp.join(REPO, a) if a.startswith('tools/') else a for a in args
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env or tool_env(),
                          capture_output=True, text=True, timeout=timeout)
    if expect_ok and proc.returncode != 0:
        raise AssertionError(
            f'{" ".join(args)} failed ({proc.returncode}):\n'
            f'{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}')
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def latest_metrics(work_dir):
    """Metrics of the newest train/val/test log json in ``work_dir``.

    mmengine's LoggerHook writes ``<work_dir>/<timestamp>/<timestamp>.json``
    (test runs) or ``.../vis_data/scalars.json`` (training).
    """
    logs = sorted(glob.glob(osp.join(work_dir, '*', '[0-9]*_[0-9]*.json')))
    assert logs, f'no metrics json under {work_dir}'
    with open(logs[-1]) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return lines[-1]


def val_metrics(work_dir):
    """Each validation's metrics from a training run's scalars.json."""
    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert scalars, f'no scalars.json under {work_dir}'
    with open(sorted(scalars)[-1]) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return [line for line in lines if 'lr' not in line]


def folder_digest(folder):
    """{relative path: sha256, or 'dir'} of everything under ``folder``: to
    show that a refused command left the user's files as they were."""
    digest = {}
    for root, folders, files in os.walk(folder):
        for name in folders:
            digest[osp.relpath(osp.join(root, name), folder)] = 'dir'
        for name in files:
            path = osp.join(root, name)
            with open(path, 'rb') as f:
                digest[osp.relpath(path, folder)] = hashlib.sha256(
                    f.read()).hexdigest()
    return digest


def load_checkpoint(path):
    """A checkpoint written by the tools (trusted: our own test output)."""
    return torch.load(path, map_location='cpu', weights_only=False)


@pytest.fixture(autouse=True)
def restore_default_scope():
    """Scopes set in a test (``init_default_scope('mmseg')``) end with it:
    mmengine keeps the newest DefaultScope as the current one, which would
    make later tests build from another toolbox's registry."""
    from mmengine.registry import DefaultScope
    before = set(DefaultScope._instance_dict)
    yield
    for name in list(DefaultScope._instance_dict):
        if name not in before:
            DefaultScope._instance_dict.pop(name)
