"""Fixes for mmengine 0.10.7 on current torch and in multi-process runs,
applied on import.

``import flexvit_mm`` calls :func:`apply_all`; each fix is idempotent,
scoped to the mmengine function it repairs, and does nothing where the
installed mmengine already behaves. One of them is a safety fix rather than
a repair: every checkpoint mmengine loads goes through
:mod:`flexvit_mm.checkpoint`, which never runs code from the file unless
the user trusts it (:func:`patch_checkpoint_loading`).

The torchvision fix is different in kind (it edits an installed file) and is
applied at install time: see :mod:`flexvit_mm.compat.torchvision_fix`.
"""
import contextlib
import functools
import os
import os.path as osp
from unittest import mock

import torch

from ..checkpoint import load_checkpoint_file, load_checkpoint_url

_PATCHED_ATTR = '_flexvit_mm_patched'


def _mark(fn):
    setattr(fn, _PATCHED_ATTR, True)
    return fn


def _is_patched(fn):
    return getattr(fn, _PATCHED_ATTR, False)


class _TorchWithSafeLoad:
    """Stands in for the ``torch`` module inside mmengine's checkpoint
    loaders.

    Every attribute is torch's own, except that ``load`` is
    :func:`flexvit_mm.checkpoint.load_checkpoint_file`.
    """

    def __init__(self, torch_module):
        self._torch = torch_module

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def load(self, f, map_location=None):
        return load_checkpoint_file(f, map_location=map_location)


def load_from_local(filename, map_location):
    """mmengine's local-file scheme, through the safe loader.

    Named as mmengine's: CheckpointLoader logs the loader's name
    ('Loads checkpoint by local backend ...').
    """
    return load_checkpoint_file(osp.expanduser(filename), map_location)


def patch_checkpoint_loading():
    """Make every checkpoint mmengine loads go through the safe loader.

    torch 2.6 made ``torch.load(weights_only=True)`` the default, and a
    Runner checkpoint holds numpy arrays and mmengine's ``HistoryBuffer``,
    so mmengine 0.10.7's own resume and ``load_from`` fail under it. The
    fix is not ``weights_only=False`` (mmengine #1670 does that on its main
    branch), which lets any checkpoint run code: every load goes through
    :func:`flexvit_mm.checkpoint.load_checkpoint_file` instead, which
    allows exactly what training checkpoints hold (docs/checkpoints.md).
    In ``mmengine.runner.checkpoint``, which every mmengine load passes
    through (``Runner.resume``/``load_checkpoint``, ``load_from``,
    ``init_cfg=dict(type='Pretrained')``, ``CheckpointLoader``):

    - the local-file scheme is replaced (``CheckpointLoader``'s own
      ``register_scheme``), so a missing or bad file gets our message;
    - the module's global ``torch`` becomes a proxy whose ``load`` is the
      safe loader, for the schemes that read a local copy or a buffer
      (``open-mmlab://`` files, ``s3://``, ``pavi://``);
    - its ``load_url`` (torch.hub's ``load_state_dict_from_url``, which
      loads with ``weights_only=False``), behind ``http(s)://``,
      ``torchvision://``, ``open-mmlab://`` and ``mmcls://``, becomes
      :func:`flexvit_mm.checkpoint.load_checkpoint_url`.
    """
    from mmengine.runner import checkpoint
    if not isinstance(checkpoint.torch, _TorchWithSafeLoad):
        checkpoint.torch = _TorchWithSafeLoad(checkpoint.torch)
    checkpoint.load_url = load_checkpoint_url
    checkpoint.CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)


def _has_other_accelerator():
    from mmengine.device import (is_mlu_available, is_musa_available,
                                 is_npu_available)
    return is_mlu_available() or is_npu_available() or is_musa_available()


@contextlib.contextmanager
def _cuda_set_device_is_noop():
    with mock.patch.object(torch.cuda, 'set_device', lambda device: None):
        yield


def _cpu_safe_init(init_fn):

    @functools.wraps(init_fn)
    def init(backend, *args, **kwargs):
        if torch.cuda.is_available() or _has_other_accelerator():
            return init_fn(backend, *args, **kwargs)
        if backend == 'nccl':
            # Configs inherit dist_cfg=dict(backend='nccl') from the
            # toolboxes' default_runtime; NCCL needs GPUs.
            backend = 'gloo'
        with _cuda_set_device_is_noop():
            return init_fn(backend, *args, **kwargs)

    return _mark(init)


def patch_cpu_distributed_init():
    """Let ``--launcher pytorch|slurm`` start on machines without CUDA.

    mmengine's ``_init_dist_pytorch`` and ``_init_dist_slurm`` call
    ``torch.cuda.set_device(local_rank)`` unconditionally, which raises on a
    CPU build of torch, and configs ask for the NCCL backend. Without CUDA
    we skip ``set_device`` for the duration of the call and use gloo. With
    CUDA (or another accelerator) the originals run unchanged.
    """
    from mmengine.dist import utils as dist_utils
    for name in ('_init_dist_pytorch', '_init_dist_slurm'):
        original = getattr(dist_utils, name)
        if not _is_patched(original):
            setattr(dist_utils, name, _cpu_safe_init(original))


def _all_parameters_on_cpu(module):
    devices = {p.device.type for p in module.parameters()}
    devices |= {b.device.type for b in module.buffers()}
    return devices <= {'cpu'}


def patch_ddp_device_ids():
    """Let ``Runner.wrap_model`` wrap CPU models in DDP.

    The Runner always passes ``device_ids=[LOCAL_RANK]`` to
    ``MMDistributedDataParallel``; torch's DDP refuses device ids for a
    module whose parameters live on the CPU. For such a module we drop them,
    which is what DDP expects for CPU training. GPU modules are untouched.
    """
    from mmengine.model import MMDistributedDataParallel
    original = MMDistributedDataParallel.__init__
    if _is_patched(original):
        return

    @functools.wraps(original)
    def __init__(self, module, *args, **kwargs):
        if kwargs.get('device_ids') is not None and _all_parameters_on_cpu(
                module):
            kwargs['device_ids'] = None
        original(self, module, *args, **kwargs)

    MMDistributedDataParallel.__init__ = _mark(__init__)


def patch_test_log_dump():
    """Write the test log json on the main process only.

    ``LoggerHook.after_test_epoch`` dumps the test metrics to
    ``<log_dir>/<timestamp>.json`` on every rank, and all ranks share that
    path (the Runner broadcasts the timestamp). Two processes truncating and
    writing one file at once can leave it corrupt, e.g.
    ``{..., "time": 0.024}5}`` after ``tools/dist_test.sh``. Every other file
    the hook writes goes through the master-only visualizer; we make this
    one master-only too, by wrapping the module's ``dump`` (used nowhere
    else in it) in mmengine's own :func:`~mmengine.dist.master_only`.
    """
    from mmengine.dist import master_only
    from mmengine.hooks import logger_hook
    if not _is_patched(logger_hook.dump):
        logger_hook.dump = _mark(master_only(logger_hook.dump))


def check_torchvision():
    """Turn the unpatched CUDA-torchvision-on-CPU failure into a clear error.

    Without the install-time fix it surfaces as ``operator torchvision::nms
    does not exist`` from deep inside timm or mmpretrain.
    """
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if 'torchvision::' not in str(error):
            raise
        fixer = os.path.join(os.path.dirname(__file__), 'torchvision_fix.py')
        raise ImportError(
            f'torchvision cannot be imported ({error}): it is a CUDA build '
            'whose C extension does not load with this CPU build of torch. '
            f'Run `python {fixer}` once (`make env` does it) to apply the '
            'install-time fix.') from error


def apply_all():
    """Apply every import-time fix (idempotent)."""
    check_torchvision()
    patch_checkpoint_loading()
    patch_cpu_distributed_init()
    patch_ddp_device_ids()
    patch_test_log_dump()
