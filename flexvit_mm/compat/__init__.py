"""Fixes for mmengine 0.10.7 on current torch and in multi-process runs,
applied on import.

``import flexvit_mm`` calls :func:`apply_all`; each fix is idempotent,
scoped to the mmengine function it repairs, and does nothing where the
installed mmengine already behaves.

The torchvision fix is different in kind (it edits an installed file) and is
applied at install time: see :mod:`flexvit_mm.compat.torchvision_fix`.
"""
import contextlib
import functools
import os
from unittest import mock

import torch

_PATCHED_ATTR = '_flexvit_mm_patched'


def _mark(fn):
    setattr(fn, _PATCHED_ATTR, True)
    return fn


def _is_patched(fn):
    return getattr(fn, _PATCHED_ATTR, False)


class _TorchWithTrustedLoad:
    """Stands in for the ``torch`` module inside mmengine's loaders.

    Every attribute is torch's own, except that ``load`` defaults to
    ``weights_only=False``.
    """

    def __init__(self, torch_module):
        self._torch = torch_module

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def load(self, *args, **kwargs):
        kwargs.setdefault('weights_only', False)
        return self._torch.load(*args, **kwargs)


def patch_checkpoint_loading():
    """Let mmengine load its own checkpoints under torch >= 2.6.

    torch 2.6 made ``torch.load(weights_only=True)`` the default. A Runner
    checkpoint holds numpy arrays, dtypes and mmengine's ``HistoryBuffer`` in
    its ``meta`` and ``message_hub``, so resume and ``load_from`` fail with
    ``UnpicklingError: Weights only load failed``. mmengine's main branch
    fixed this by passing ``weights_only=False`` in ``runner/checkpoint.py``
    and ``utils/dl_utils/hub.py`` (mmengine #1670), but no release has it.
    We do the same, scoped to those modules: their global name ``torch`` is
    pointed at a proxy whose ``load`` defaults to ``weights_only=False``
    (``hub`` only binds ``torch`` on torch < 1.7; on newer torch it re-exports
    ``torch.hub.load_state_dict_from_url``, whose default is already
    ``weights_only=False``). Every other ``torch.load`` in the process keeps
    torch's safe default, which is why this is preferred over the
    process-wide ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``. A caller that passes
    ``weights_only`` explicitly is respected.
    """
    from mmengine.runner import checkpoint
    from mmengine.utils.dl_utils import hub
    for module in (checkpoint, hub):
        if hasattr(module, 'torch') and not isinstance(
                module.torch, _TorchWithTrustedLoad):
            module.torch = _TorchWithTrustedLoad(module.torch)


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
