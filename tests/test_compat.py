"""Each compatibility fix: the failure without it, and the behaviour with it.

The "without" side runs in a fresh interpreter that never imports
flexvit_mm, since the fixes are process-wide once applied.
"""
import os
import os.path as osp
import pickle
import textwrap

import numpy as np
import pytest
import torch

import flexvit_mm  # noqa: F401
from flexvit_mm.compat import torchvision_fix
from flexvit_mm.errors import UntrustedCheckpointError

from .conftest import free_port, run_tool


def _run_python(code, expect_ok, **env):
    from .conftest import tool_env
    return run_tool('-c', textwrap.dedent(code), expect_ok=expect_ok,
                    env=tool_env(**env))


@pytest.fixture
def runner_checkpoint(tmp_path):
    """A checkpoint holding what a Runner checkpoint holds besides tensors:
    numpy scalars and arrays in meta, and a MessageHub with HistoryBuffers."""
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint
    hub = MessageHub.get_instance('compat_test')
    hub.update_scalar('train/loss', 0.5)
    path = str(tmp_path / 'runner.pth')
    save_checkpoint(
        dict(meta=dict(seed=np.int64(3), hist=np.arange(3)),
             message_hub=hub.state_dict(),
             state_dict=dict(w=torch.ones(2))), path)
    return path


def test_runner_checkpoint_fails_to_load_without_the_fix(runner_checkpoint):
    proc = _run_python(
        f"""
        from mmengine.runner.checkpoint import _load_checkpoint
        _load_checkpoint({runner_checkpoint!r}, map_location='cpu')
        """,
        expect_ok=False)
    assert proc.returncode != 0
    assert 'Weights only load failed' in proc.stderr


def test_runner_checkpoint_loads_with_the_fix(runner_checkpoint):
    from mmengine.runner.checkpoint import _load_checkpoint
    checkpoint = _load_checkpoint(runner_checkpoint, map_location='cpu')
    assert checkpoint['meta']['seed'] == 3
    np.testing.assert_array_equal(checkpoint['meta']['hist'], np.arange(3))
    assert 'train/loss' in checkpoint['message_hub']['log_scalars']


class _RunsCode:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


def test_checkpoint_fix_loads_safely(runner_checkpoint, tmp_path):
    """The fix is not ``weights_only=False``: every mmengine loader still
    refuses a pickle that would run code (docs/checkpoints.md)."""
    from mmengine.runner import checkpoint
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(1)), x=_RunsCode(marker)),
               path)
    loaders = [
        lambda: checkpoint._load_checkpoint(path, map_location='cpu'),
        lambda: checkpoint.CheckpointLoader.load_checkpoint(path),
        # what open-mmlab://, s3:// and pavi:// use
        lambda: checkpoint.torch.load(path, map_location='cpu'),
        # what http(s)://, torchvision://, open-mmlab:// and mmcls:// use
        lambda: checkpoint.load_url(f'file://{path}',
                                    model_dir=str(tmp_path / 'hub')),
    ]
    for load in loaders:
        with pytest.raises(UntrustedCheckpointError, match='io.open'):
            load()
    assert not osp.exists(marker)
    # torch.load elsewhere keeps torch's own default.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(runner_checkpoint, map_location='cpu')


_DIST_SCRIPT = """
import os, sys
if {fixed}:
    import flexvit_mm
import torch.distributed as dist
import torch.nn as nn
from mmengine.dist import init_dist
from mmengine.model import MMDistributedDataParallel
init_dist('pytorch', backend='nccl')   # what configs inherit
print('backend', dist.get_backend())
model = MMDistributedDataParallel(module=nn.Linear(2, 2), device_ids=[0])
print('wrapped', type(model).__name__)
dist.destroy_process_group()
"""


def _dist_env():
    # CUDA_VISIBLE_DEVICES='' makes even a CUDA machine behave like a
    # CPU-only one, so these checks run (and mean the same) everywhere.
    return dict(CUDA_VISIBLE_DEVICES='', RANK='0', WORLD_SIZE='1',
                LOCAL_RANK='0',
                MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()))


def test_cpu_distributed_init_fails_without_the_fix():
    proc = _run_python(_DIST_SCRIPT.format(fixed=False), expect_ok=False,
                       **_dist_env())
    assert proc.returncode != 0
    # mmengine's unconditional torch.cuda.set_device(local_rank) fails.
    assert 'set_device' in proc.stderr and 'backend' not in proc.stdout


def test_cpu_distributed_init_and_ddp_work_with_the_fix():
    proc = _run_python(_DIST_SCRIPT.format(fixed=True), expect_ok=True,
                       **_dist_env())
    assert 'backend gloo' in proc.stdout
    assert 'wrapped MMDistributedDataParallel' in proc.stdout


def test_cpu_ddp_device_ids_fail_without_the_fix():
    script = """
    import torch.distributed as dist, torch.nn as nn
    from mmengine.model import MMDistributedDataParallel
    dist.init_process_group('gloo')
    try:
        MMDistributedDataParallel(module=nn.Linear(2, 2), device_ids=[0])
    finally:
        dist.destroy_process_group()
    """
    proc = _run_python(script, expect_ok=False, **_dist_env())
    assert proc.returncode != 0
    assert 'device_ids' in proc.stderr


_TEST_LOG_SCRIPT = """
import os, sys
from unittest import mock
if {fixed}:
    import flexvit_mm
from mmengine.dist import utils as dist_utils
from mmengine.hooks import LoggerHook
log_dir = sys.argv[1]
hook = LoggerHook()
hook.json_log_path = 'run.json'
runner = mock.MagicMock(log_dir=log_dir, test_dataloader=[0])
runner.log_processor.get_log_after_epoch.return_value = (
    dict(mIoU=1.0), 'mIoU: 1.0')
for rank in (1, 0):
    with mock.patch.object(dist_utils, 'get_rank', lambda group=None: rank):
        hook.after_test_epoch(runner)
    print('rank', rank, 'wrote', os.path.exists(os.path.join(log_dir, 'run.json')))
"""


@pytest.mark.parametrize('fixed', [False, True])
def test_test_log_json_is_written_by_the_main_process_only(tmp_path, fixed):
    # Without the fix every rank dumps the same <timestamp>.json at once,
    # which corrupted it in a two-process dist_test.sh run.
    from .conftest import tool_env
    proc = run_tool('-c', _TEST_LOG_SCRIPT.format(fixed=fixed),
                    str(tmp_path), expect_ok=True, env=tool_env())
    assert f'rank 1 wrote {not fixed}' in proc.stdout
    assert 'rank 0 wrote True' in proc.stdout


def test_fixes_are_idempotent():
    from mmengine.dist import utils as dist_utils
    from mmengine.model import MMDistributedDataParallel
    from mmengine.runner import checkpoint
    from mmengine.hooks import logger_hook
    def state():
        return (dist_utils._init_dist_pytorch, dist_utils._init_dist_slurm,
                MMDistributedDataParallel.__init__, checkpoint.torch,
                checkpoint.load_url,
                checkpoint.CheckpointLoader._schemes[''], logger_hook.dump)

    before = state()
    flexvit_mm.compat.apply_all()
    after = state()
    assert before == after


# ---------------------------------------------------------------- torchvision

def _torchvision_copy(tmp_path, source_text):
    """A torchvision package whose every entry links to the installed one,
    except a given ``_meta_registrations.py``."""
    real = torchvision_fix.torchvision_dir()
    copy = tmp_path / 'site' / 'torchvision'
    copy.mkdir(parents=True)
    for name in os.listdir(real):
        if name in ('_meta_registrations.py', '__pycache__'):
            continue
        os.symlink(osp.join(real, name), copy / name)
    (copy / '_meta_registrations.py').write_text(source_text)
    return str(copy)


def _import_torchvision(site):
    return _run_python(
        'import torchvision, torchvision.transforms.v2; print("imported")',
        expect_ok=False, PYTHONPATH=site, PYTHONDONTWRITEBYTECODE='1')


def _pristine_source():
    real = torchvision_fix.torchvision_dir()
    with open(osp.join(real, '_meta_registrations.py')) as f:
        return torchvision_fix.unpatch_source(f.read())


def test_torchvision_fix_repairs_the_cuda_wheel_on_cpu_torch(tmp_path):
    real = torchvision_fix.torchvision_dir()
    copy = _torchvision_copy(tmp_path, _pristine_source())
    site = osp.dirname(copy)
    if torchvision_fix.extension_loads(real):
        # A working torchvision (e.g. CUDA torch): the fix must not touch it.
        assert torchvision_fix.apply(copy) == 'not needed'
        assert open(osp.join(copy, '_meta_registrations.py')).read() == \
            _pristine_source()
        return
    broken = _import_torchvision(site)
    assert broken.returncode != 0
    assert 'torchvision::nms' in broken.stderr

    assert torchvision_fix.needs_fix(copy)
    assert torchvision_fix.apply(copy) == 'patched'
    fixed = _import_torchvision(site)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert 'imported' in fixed.stdout
    assert not torchvision_fix.needs_fix(copy)

    patched = open(osp.join(copy, '_meta_registrations.py')).read()
    assert torchvision_fix.apply(copy) == 'already patched'
    assert open(osp.join(copy, '_meta_registrations.py')).read() == patched


def test_torchvision_fix_never_touches_a_working_torchvision(
        tmp_path, monkeypatch):
    copy = _torchvision_copy(tmp_path, _pristine_source())
    monkeypatch.setattr(torchvision_fix, 'extension_loads', lambda d: True)
    assert not torchvision_fix.needs_fix(copy)
    assert torchvision_fix.apply(copy) == 'not needed'
    assert open(osp.join(copy, '_meta_registrations.py')).read() == \
        _pristine_source()


def test_torchvision_patch_guards_exactly_nms_and_qnms():
    source = _pristine_source()
    patched = torchvision_fix.patch_source(source)
    assert patched.count(torchvision_fix.MARKER) == 2
    assert torchvision_fix.patch_source(patched) == patched
    assert torchvision_fix.unpatch_source(patched) == source
    changed = [(a, b) for a, b in zip(source.splitlines(),
                                      patched.splitlines()) if a != b]
    assert [a for a, _ in changed] == [
        '@torch.library.register_fake("torchvision::nms")',
        '@torch.library.register_fake("torchvision::qnms")'
    ]
