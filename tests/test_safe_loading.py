"""Checkpoints are data, not code (docs/checkpoints.md).

A checkpoint whose pickle would run code is refused through every path that
loads one, unless it is trusted; our own training checkpoints still test
and resume; ``tools/test.py`` refuses a checkpoint that is unreadable or
does not fit the config, before anything is evaluated or written.

Refusals that come before a Runner is built run the tool's main in this
process, through :func:`flexvit_mm.cli.run` as its script does; the others
run the script in a subprocess.
"""
import os
import os.path as osp
import re
import shlex
import shutil

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.optim import OneCycleLR
from safetensors.torch import save_file as save_safetensors

from flexvit_mm import checkpoint as ckpt
from flexvit_mm.cli import (convert_shvit, convert_snnetv2, export_stitch,
                            run)
from flexvit_mm.cli import test as test_cli
from flexvit_mm.cli import train as train_cli
from flexvit_mm.errors import (CheckpointMismatchError, FlexvitError,
                               UnreadableCheckpointError,
                               UntrustedCheckpointError)
from flexvit_mm.models.backbones.anchors import load_anchor_state_dict
from flexvit_mm.models.backbones.shvit import SHViT

from .conftest import (CONFIGS, data_root_options, latest_metrics,
                       load_checkpoint, run_tool)

CLS = osp.join(CONFIGS, 'cls_snnetv2_tiny.py')
SEG = osp.join(CONFIGS, 'seg_snnetv2_tiny.py')
SHVIT = osp.join(CONFIGS, 'cls_shvit_s4_tiny.py')
#: How pickle names os.system (posix.system on Linux).
EVIL_GLOBAL = f'{os.system.__module__}.system'


class _RunsCode:
    """Unpickling it runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {shlex.quote(self.marker)}', )


def save_malicious(path, marker, base=None):
    """``base`` (a checkpoint dict; default: one tiny tensor) with an
    object in its meta whose unpickling creates ``marker``."""
    checkpoint = dict(base or dict(state_dict=dict(w=torch.zeros(1))))
    checkpoint['meta'] = dict(checkpoint.get('meta') or {},
                              payload=_RunsCode(marker))
    torch.save(checkpoint, path)
    return str(path)


def _unreadable(kind, tmp_path, good=None):
    """A file that is not a readable checkpoint, cut from ``good``."""
    path = tmp_path / f'{kind.replace(" ", "_")}.pth'
    if kind == 'directory':
        path.mkdir()
        return str(path)
    if good is None:
        good = tmp_path / 'good.pth'
        torch.save(dict(state_dict=dict(w=torch.zeros(64))), good)
    with open(good, 'rb') as f:
        data = f.read()
    path.write_bytes({
        'empty': b'',
        'truncated': data[:len(data) // 2],
        'random bytes': np.random.default_rng(0).bytes(4096),
        'text': b'not a checkpoint\n',
    }[kind])
    return str(path)


def _train(config, work_dir, options, iters, *extra):
    run_tool('tools/train.py', config, '--work-dir', work_dir, '--no-validate',
             *extra, '--cfg-options', f'train_cfg.max_iters={iters}',
             'default_hooks.checkpoint.interval=1', *options)


@pytest.fixture(scope='module')
def cls_run(synthetic, tmp_path_factory):
    """A tiny stitched classifier trained for 2 iterations by
    tools/train.py."""
    options = data_root_options(synthetic('imagenet'))
    work_dir = str(tmp_path_factory.mktemp('cls_run'))
    _train(CLS, work_dir, options, 2)
    return dict(work_dir=work_dir, options=options,
                checkpoint=osp.join(work_dir, 'iter_2.pth'))


class Refusal:
    """The end of a tool run that must be a refusal: its exit status and
    stderr, whichever way it was run."""

    def __init__(self, code, stderr):
        self.code, self.stderr = code, stderr

    @classmethod
    def of_script(cls, *args):
        proc = run_tool(*args, expect_ok=False)
        return cls(proc.returncode, proc.stderr)

    @classmethod
    def of_main(cls, main, args, capsys):
        with pytest.raises(SystemExit) as info:
            run(main, list(args))
        return cls(info.value.code, capsys.readouterr().err)

    def error(self):
        """The one-line message, after checking exit 2 and no
        traceback."""
        assert self.code == 2, self.stderr[-3000:]
        assert 'Traceback' not in self.stderr, self.stderr[-3000:]
        return self.stderr.strip().splitlines()[-1]


#: Per load path: how the tool is run (a script, or its main in this
#: process) and its arguments, given the malicious file and a work dir.
LOAD_PATHS = {
    'test': (test_cli.main, lambda evil, work, data: (
        CLS, evil, '--work-dir', work, *data)),
    'test --stitch-id all': ('tools/test.py', lambda evil, work, data: (
        CLS, evil, '--work-dir', work, '--stitch-id', 'all', *data)),
    'train --resume FILE': (train_cli.main, lambda evil, work, data: (
        CLS, '--work-dir', work, '--resume', evil, *data,
        'train_cfg.max_iters=3')),
    'train --resume (auto)': (train_cli.main, lambda evil, work, data: (
        CLS, '--work-dir', work, '--resume', *data,
        'train_cfg.max_iters=3')),
    'load_from': ('tools/train.py', lambda evil, work, data: (
        CLS, '--work-dir', work, *data, f'load_from={evil}')),
    'init_cfg Pretrained': ('tools/train.py', lambda evil, work, data: (
        CLS, '--work-dir', work, *data,
        'model.backbone.init_cfg.type=Pretrained',
        f'model.backbone.init_cfg.checkpoint={evil}')),
    'SHViT Pretrained': ('tools/train.py', lambda evil, work, data: (
        SHVIT, '--work-dir', work, *data,
        'model.backbone.init_cfg.type=Pretrained',
        f'model.backbone.init_cfg.checkpoint={evil}')),
    'snnetv2 converter': (convert_snnetv2.main, lambda evil, work, data: (
        CLS, evil, osp.join(work, 'converted.pth'))),
    'shvit converter': (convert_shvit.main, lambda evil, work, data: (
        evil, osp.join(work, 'converted.pth'), '--arch', 's4')),
    'export': (export_stitch.main, lambda evil, work, data: (
        CLS, evil, '--stitch-id', '0', '--out', osp.join(work, 'export'))),
}


@pytest.mark.parametrize('path', list(LOAD_PATHS))
def test_malicious_checkpoint_runs_no_code_on_any_load_path(
        path, cls_run, tmp_path, capsys):
    marker = str(tmp_path / 'code_ran')
    evil = save_malicious(tmp_path / 'evil.pth', marker,
                          load_checkpoint(cls_run['checkpoint']))
    work = str(tmp_path / 'work')
    if path == 'train --resume (auto)':
        os.makedirs(work)
        with open(osp.join(work, 'last_checkpoint'), 'w') as f:
            f.write(evil)
    tool, args = LOAD_PATHS[path]
    args = args(evil, work, ('--cfg-options', *cls_run['options']))
    refusal = Refusal.of_script(tool, *args) if isinstance(tool, str) \
        else Refusal.of_main(tool, args, capsys)
    error = refusal.error()
    assert error.startswith(f'error: checkpoint {evil} is refused'), error
    assert EVIL_GLOBAL in error and '--trust-checkpoint' in error
    assert not osp.exists(marker), 'the checkpoint ran code'
    # No report, checkpoint, conversion or export was written.
    written = [name for _, _, names in os.walk(work) for name in names
               if name.endswith(('.json', '.pth', '.onnx', '.csv'))]
    assert written == [], written


def test_trusted_checkpoint_is_loaded(cls_run, tmp_path):
    marker = str(tmp_path / 'code_ran')
    evil = save_malicious(tmp_path / 'evil.pth', marker,
                          load_checkpoint(cls_run['checkpoint']))
    work = str(tmp_path / 'work')
    run_tool('tools/test.py', CLS, evil, '--trust-checkpoint', '--work-dir',
             work, '--cfg-options', *cls_run['options'])
    assert osp.exists(marker)
    assert 'accuracy/top1' in latest_metrics(work)


@pytest.mark.parametrize('task', ['cls', 'seg'])
def test_own_checkpoints_test_and_resume(task, cls_run, synthetic, tmp_path):
    work = str(tmp_path / 'work')
    if task == 'cls':
        config, options, metric = CLS, cls_run['options'], 'accuracy/top1'
        # A copy: its last_checkpoint names the original folder's file.
        shutil.copytree(cls_run['work_dir'], work)
    else:
        config, metric = SEG, 'mIoU'
        options = data_root_options(synthetic('ade20k'))
        _train(config, work, options, 2)
    test_dir = str(tmp_path / 'test')
    run_tool('tools/test.py', config, osp.join(work, 'iter_2.pth'),
             '--work-dir', test_dir, '--cfg-options', *options)
    assert metric in latest_metrics(test_dir)
    _train(config, work, options, 3, '--resume')
    resumed = ckpt.load_checkpoint_file(osp.join(work, 'iter_3.pth'))
    assert resumed['meta']['iter'] == 3
    assert {'optimizer', 'message_hub', 'param_schedulers'} <= set(resumed)


def _foreign(run, tmp_path):
    """An SHViT classifier's checkpoint."""
    state = {f'backbone.{k}': v
             for k, v in SHViT(arch='s1').state_dict().items()}
    torch.save(dict(state_dict=state), tmp_path / 'shvit.pth')
    return str(tmp_path / 'shvit.pth'), ()


def _partial(run, tmp_path):
    """Our checkpoint with every other key."""
    checkpoint = load_checkpoint(run['checkpoint'])
    checkpoint['state_dict'] = dict(
        list(checkpoint['state_dict'].items())[::2])
    torch.save(checkpoint, tmp_path / 'half.pth')
    return str(tmp_path / 'half.pth'), ()


def _other_width(run, tmp_path):
    """Our checkpoint, for a pair whose first anchor is narrower."""
    return run['checkpoint'], ('model.backbone.anchors.0.embed_dim=32', )


@pytest.mark.parametrize('make,expect', [
    (_foreign, r'0 of the model\'s (\d+) keys fit; \1 missing .*; \d+ '
     r'unexpected \(backbone\.stem\.'),
    (_partial, r'fit; \d+ missing \(backbone\.'),
    (_other_width, r'fit; \d+ mis-shaped \(backbone\.anchors\.0\.\S+ '
     r'\(1, 1, 48\) vs \(1, 1, 32\) in the model'),
], ids=['foreign', 'partial', 'other-width'])
def test_checkpoint_that_does_not_fit_is_refused(make, expect, cls_run,
                                                 tmp_path):
    path, options = make(cls_run, tmp_path)
    work = str(tmp_path / 'work')
    error = Refusal.of_script(
        'tools/test.py', CLS, path, '--stitch-id', 'all', '--work-dir', work,
        '--cfg-options', *cls_run['options'], *options).error()
    assert error.startswith(
        f'error: checkpoint {path} does not fit the model of this config'), \
        error
    assert re.search(expect, error), error
    assert not osp.exists(osp.join(work, 'stitches.json'))


@pytest.mark.parametrize('kind,tool', [
    ('truncated', 'test.py --stitch-id all'),
    ('random bytes', 'test.py --stitch-id all'),
    ('empty', 'test.py --stitch-id all'),
    ('empty', 'train.py --resume FILE'),
])
def test_unreadable_checkpoint_exits_2(kind, tool, cls_run, tmp_path,
                                       capsys):
    path = _unreadable(kind, tmp_path, good=cls_run['checkpoint'])
    work = str(tmp_path / 'work')
    if tool.startswith('test.py'):
        main, args = test_cli.main, (CLS, path, '--stitch-id', 'all')
    else:
        main, args = train_cli.main, (CLS, '--resume', path)
    error = Refusal.of_main(
        main, (*args, '--work-dir', work, '--cfg-options',
               *cls_run['options']), capsys).error()
    assert error.startswith(f'error: checkpoint {path} is '), error
    assert not osp.exists(osp.join(work, 'stitches.json'))


@pytest.mark.parametrize('kind,message', [
    ('empty', 'is empty (0 bytes)'),
    ('truncated', 'is truncated or not a PyTorch checkpoint'),
    ('random bytes', 'is not a PyTorch checkpoint, or it is corrupt'),
    ('text', 'is not a PyTorch checkpoint, or it is corrupt'),
    ('directory', 'is a directory'),
])
def test_unreadable_files_are_named(kind, message, tmp_path):
    path = _unreadable(kind, tmp_path)
    with pytest.raises(UnreadableCheckpointError) as error:
        ckpt.load_checkpoint_file(path)
    assert str(error.value).startswith(f'checkpoint {path} {message}')


def test_trust_env_var_and_switch(tmp_path, monkeypatch):
    marker = str(tmp_path / 'code_ran')
    evil = save_malicious(tmp_path / 'evil.pth', marker)
    with pytest.raises(UntrustedCheckpointError, match=ckpt.TRUST_ENV_VAR):
        ckpt.load_checkpoint_file(evil)
    monkeypatch.setenv(ckpt.TRUST_ENV_VAR, 'maybe')
    with pytest.raises(FlexvitError, match='neither on nor off'):
        ckpt.load_checkpoint_file(evil)
    assert not osp.exists(marker)
    monkeypatch.setenv(ckpt.TRUST_ENV_VAR, '1')
    assert ckpt.load_checkpoint_file(evil)['state_dict']['w'].shape == (1, )
    assert osp.exists(marker)
    os.remove(marker)
    monkeypatch.delenv(ckpt.TRUST_ENV_VAR)
    ckpt.trust_checkpoints()
    try:
        ckpt.load_checkpoint_file(evil)
    finally:
        ckpt.trust_checkpoints(False)
    assert osp.exists(marker)
    os.remove(marker)
    with pytest.raises(UntrustedCheckpointError):
        ckpt.load_checkpoint_file(evil)
    assert not osp.exists(marker)


def test_restricted_getattr_reaches_nothing_else(tmp_path):

    class Reach:

        def __reduce__(self):
            return getattr, (HistoryBuffer, '__init__')

    torch.save(dict(x=Reach()), tmp_path / 'reach.pth')
    with pytest.raises(UntrustedCheckpointError,
                       match=r"getattr\(HistoryBuffer,'__init__'\)"):
        ckpt.load_checkpoint_file(str(tmp_path / 'reach.pth'))


def test_allowed_globals_load_numpy_history_and_schedulers(tmp_path):
    buffer = HistoryBuffer()
    buffer.update(0.5)
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    scheduler = OneCycleLR(optimizer, eta_max=1.0, total_steps=10)
    state = dict(buffer=buffer, scheduler=scheduler.state_dict(), meta=dict(
        seed=np.int64(3), mean=np.float32(0.5), hist=np.arange(3),
        dtype=np.dtype('float16')))
    torch.save(state, tmp_path / 'state.pth')
    loaded = ckpt.load_checkpoint_file(str(tmp_path / 'state.pth'))
    assert loaded['buffer'].current() == 0.5
    assert loaded['meta']['seed'] == 3 and loaded['meta']['mean'] == 0.5
    assert loaded['meta']['dtype'] == np.float16
    np.testing.assert_array_equal(loaded['meta']['hist'], np.arange(3))
    OneCycleLR(optimizer, eta_max=1.0, total_steps=10).load_state_dict(
        loaded['scheduler'])


def test_check_state_dict_fits_counts_and_revises_keys():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 4))
    state = {f'module.{k}': v for k, v in model.state_dict().items()}
    ckpt.check_state_dict_fits(model, state, 'ok.pth')
    state['module.0.weight'] = torch.zeros(5, 2)
    state.pop('module.1.bias')
    state['extra'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as error:
        ckpt.check_state_dict_fits(model, state, 'bad.pth')
    assert ('checkpoint bad.pth does not fit the model of this config: 2 of '
            "the model's 4 keys fit; 1 missing (1.bias); 1 unexpected "
            '(extra); 1 mis-shaped (0.weight (5, 2) vs (3, 2) in the model)'
            ) in str(error.value)
    # What tools/test.py does with {'state_dict': {'foo': ...}}.
    with pytest.raises(CheckpointMismatchError,
                       match=r"0 of the model's 4 keys fit; 4 missing "
                       r'\(0.weight, 0.bias, 1.weight, 1.bias\); 1 '
                       r'unexpected \(foo\)'):
        ckpt.check_state_dict_fits(
            model, ckpt.state_dict_of(dict(state_dict=dict(
                foo=torch.zeros(3))), 'foo.pth'), 'foo.pth')
    with pytest.raises(CheckpointMismatchError, match='holds no state dict'):
        ckpt.state_dict_of(torch.zeros(3), 'tensor.pth')


def test_anchor_weights_go_through_the_safe_loader(tmp_path):
    marker = str(tmp_path / 'code_ran')
    evil = save_malicious(tmp_path / 'evil.pth', marker)
    with pytest.raises(UntrustedCheckpointError, match=EVIL_GLOBAL):
        load_anchor_state_dict(evil)
    assert not osp.exists(marker)
    weights = dict(cls_token=torch.ones(1, 1, 4))
    save_safetensors(weights, str(tmp_path / 'model.safetensors'))
    assert torch.equal(
        load_anchor_state_dict(str(tmp_path / 'model.safetensors'))
        ['cls_token'], weights['cls_token'])
    (tmp_path / 'bad.safetensors').write_bytes(b'\x00' * 16)
    with pytest.raises(UnreadableCheckpointError,
                       match='not a readable .safetensors file'):
        load_anchor_state_dict(str(tmp_path / 'bad.safetensors'))
