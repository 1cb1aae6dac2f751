"""Safe checkpoint reading: checkpoints are data, not code.

A ``.pth`` file is a pickle, and unpickling can call any function the file
names (``os.system`` included). Every checkpoint flexvit-mm reads -- by our
tools, by mmengine's loaders (resume, ``load_from``, ``init_cfg``
Pretrained) and by our modules -- goes through :func:`load_checkpoint_file`,
which unpickles with ``torch.load(weights_only=True)``: tensors, containers
and plain values, plus exactly the globals in :data:`ALLOWED_GLOBALS` (what
our own and stock mmengine training checkpoints hold). A file that names any
other global is refused (:class:`~flexvit_mm.errors.UntrustedCheckpointError`)
unless the user trusts checkpoints explicitly (:func:`trust_checkpoints`,
set by ``--trust-checkpoint``, or ``FLEXVIT_MM_TRUST_CHECKPOINTS=1``).

:func:`check_state_dict_fits` is the strict check used where a checkpoint
must be exactly the model's (evaluation, export). See docs/checkpoints.md.
"""
import collections
import functools
import os
import os.path as osp
import pickle
import re
import struct
import zipfile
from typing import Any, Iterable, List, Mapping, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors

from .errors import (CheckpointMismatchError, FlexvitError,
                     UnreadableCheckpointError, UntrustedCheckpointError)

__all__ = [
    'TRUST_ENV_VAR', 'ALLOWED_GLOBALS', 'trust_checkpoints',
    'checkpoints_trusted', 'load_checkpoint_file', 'load_checkpoint_url',
    'state_dict_of', 'check_state_dict_fits', 'load_model_weights'
]

#: Set to 1 to trust every checkpoint (load it with full pickle), e.g. for a
#: config run by a toolbox's own ``tools/train.py``.
TRUST_ENV_VAR = 'FLEXVIT_MM_TRUST_CHECKPOINTS'

_TRUE = ('1', 'true', 'yes', 'on')
_FALSE = ('', '0', 'false', 'no', 'off')


def _numpy_aliases():
    # numpy 2 moved numpy.core to numpy._core; a pickle names the module of
    # the numpy that wrote it, so a checkpoint from either must load.
    multiarray = np._core.multiarray
    return [(function, f'{module}.multiarray.{function.__name__}')
            for function in (multiarray._reconstruct, multiarray.scalar)
            for module in ('numpy._core', 'numpy.core')]


#: The class attributes a checkpoint may fetch with ``getattr``: functions
#: that mmengine keeps in its state, which pickle stores by name as
#: ``getattr(class, name)``.
_ALLOWED_ATTRIBUTES = {
    HistoryBuffer: ('min', 'max', 'current', 'mean'),
    OneCycleParamScheduler: ('_annealing_cos', '_annealing_linear'),
}


def _allowed_getattr(owner, name):
    """``getattr`` for the unpickler, limited to :data:`_ALLOWED_ATTRIBUTES`
    (and statistics registered with ``HistoryBuffer.register_statistics``):
    a free ``getattr`` would let a file reach any function."""
    allowed = _ALLOWED_ATTRIBUTES.get(owner, ())
    if owner is HistoryBuffer:
        allowed = allowed + tuple(HistoryBuffer._statistics_methods)
    if isinstance(name, str) and name in allowed:
        return getattr(owner, name)
    owner_name = getattr(owner, '__qualname__', type(owner).__qualname__)
    raise pickle.UnpicklingError(
        f'Unsupported global: GLOBAL getattr({owner_name},{name!r}) is not '
        'allowed.')


#: The globals, beyond torch's own safe set, that a checkpoint may name:
#: what our own and stock mmengine training checkpoints hold (found by
#: loading every checkpoint that tests/configs and the demo write).
ALLOWED_GLOBALS = [
    # MessageHub state: each logged scalar's history.
    HistoryBuffer,
    # numpy arrays (HistoryBuffer data, dataset metainfo), numpy scalars
    # (logged values) and their dtypes, as numpy 1.x and 2.x pickle them.
    np.ndarray,
    np.dtype,
    *_numpy_aliases(),
    # A dtype is rebuilt as an instance of its class (np.dtypes.Float64DType
    # etc.), which the unpickler must be allowed to build: the bool, integer
    # and float ones a logged value or metric can have; not object, void or
    # string dtypes.
    *(type(np.dtype(name)) for name in (
        'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
        'uint32', 'uint64', 'float16', 'float32', 'float64')),
    # OneCycleLR's state holds its annealing function (configs/depth).
    OneCycleParamScheduler,
    # How pickle names the functions above (HistoryBuffer's statistics,
    # OneCycleLR's annealing); limited to those.
    (_allowed_getattr, 'builtins.getattr'),
]

_trusted = False


def trust_checkpoints(enabled: bool = True) -> None:
    """Trust (or stop trusting) every checkpoint this process loads.

    Our tools call it for ``--trust-checkpoint``. A trusted file is loaded
    with full pickle, which runs whatever code the file names.

    Args:
        enabled (bool): Trust checkpoints from now on. Defaults to True.
    """
    global _trusted
    _trusted = bool(enabled)


def checkpoints_trusted() -> bool:
    """Whether checkpoints are trusted, by :func:`trust_checkpoints` or by
    the :data:`TRUST_ENV_VAR` environment variable."""
    if _trusted:
        return True
    value = os.environ.get(TRUST_ENV_VAR, '').strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise FlexvitError(
        f'{TRUST_ENV_VAR}={os.environ[TRUST_ENV_VAR]!r} is neither on nor '
        f'off: set it to 1 to trust every checkpoint, or unset it.')


def _trust_hint() -> str:
    return (f'If you trust the file\'s source, load it anyway with '
            f'--trust-checkpoint (our tools) or {TRUST_ENV_VAR}=1 (any '
            'other tool); that runs whatever code the file holds.')


_GLOBAL_IN_MESSAGE = re.compile(r'GLOBAL (\S+)')


def _untrusted_globals(error: Exception, file) -> List[str]:
    """The globals a weights-only load refused: all that are not allowed
    where the file can be scanned statically, else the one torch names."""
    if isinstance(file, (str, os.PathLike)):
        try:
            with torch.serialization.safe_globals(ALLOWED_GLOBALS):
                names = torch.serialization.get_unsafe_globals_in_checkpoint(
                    file)
        except Exception:  # not a zip checkpoint: fall back to the message
            names = []
        if names:
            return sorted(set(names))
    return sorted(set(_GLOBAL_IN_MESSAGE.findall(str(error))))


def _weights_only_reason(message: str) -> str:
    # torch's message is a page of advice around the one line that says
    # what the unpickler met.
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith('WeightsUnpickler error:'):
            rest = line[len('WeightsUnpickler error:'):].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else line)
    for line in lines:
        if line.startswith(('Unsupported', 'Trying to', 'Can only')):
            return line
    return lines[-1] if lines else 'unknown reason'


def _readable_error(error: BaseException, source: str,
                    file) -> BaseException:
    """Our error for the ways ``torch.load`` fails on a bad or hostile
    file, naming it; ``error`` itself for any other failure."""
    message = str(error)
    if isinstance(error, pickle.UnpicklingError) and (
            'Weights only load failed' in message):
        names = _untrusted_globals(error, file)
        if names:
            return UntrustedCheckpointError(
                f'checkpoint {source} is refused: its pickle needs '
                f'{", ".join(names)}, outside what weights and training '
                'state need (docs/checkpoints.md); loading it could run '
                f'code from the file. {_trust_hint()}')
        reason = _weights_only_reason(message)
        if 'Unsupported operand' in reason:
            return UnreadableCheckpointError(
                f'checkpoint {source} is not a PyTorch checkpoint, or it is '
                f'corrupt (the safe unpickler stopped at: {reason}). Check '
                'the file, or download it again.')
        return UntrustedCheckpointError(
            f'checkpoint {source} is refused: the safe unpickler stopped at: '
            f'{reason}. {_trust_hint()}')
    if isinstance(error, IsADirectoryError):
        return UnreadableCheckpointError(
            f'checkpoint {source} is a directory; give the checkpoint file '
            '(.pth) itself.')
    if isinstance(error, FileNotFoundError):
        return UnreadableCheckpointError(
            f'checkpoint {source} does not exist; check the path.')
    if isinstance(error, RuntimeError) and (
            'PytorchStreamReader' in message or 'zip archive' in message):
        return UnreadableCheckpointError(
            f'checkpoint {source} is truncated or not a PyTorch checkpoint '
            '(its zip archive cannot be read). Check the file, or download '
            'or copy it again.')
    if isinstance(error, EOFError):
        return UnreadableCheckpointError(
            f'checkpoint {source} ends too early: it is truncated. Download '
            'or copy it again.')
    if isinstance(error, (pickle.UnpicklingError, KeyError, ValueError,
                          UnicodeDecodeError, struct.error,
                          zipfile.BadZipFile)):
        return UnreadableCheckpointError(
            f'checkpoint {source} is not a PyTorch checkpoint, or it is '
            f'corrupt ({type(error).__name__}: {message[:200]}). Check the '
            'file, or download it again.')
    return error


def _load_safetensors(path: str, map_location) -> dict:
    # Only tensors and a json header: nothing to trust.
    device = map_location if isinstance(map_location, str) else 'cpu'
    try:
        return load_safetensors(path, device=device)
    except SafetensorError as error:
        raise UnreadableCheckpointError(
            f'checkpoint {path} is not a readable .safetensors file '
            f'({error}). Check the file, or download it again.') from error


def load_checkpoint_file(path, map_location='cpu', mmap=False) -> Any:
    """Load a checkpoint without letting it run code.

    Args:
        path (str | os.PathLike | file-like): A ``.pth``/``.bin`` written by
            ``torch.save``, a ``.safetensors`` file, or an open binary file.
        map_location (str | callable | torch.device | dict): As in
            :func:`torch.load`. Defaults to 'cpu'.
        mmap (bool): Map the tensors' storage from the file instead of
            reading it, where the format allows (a zip checkpoint): cheap
            when only keys and shapes are needed. Defaults to False.

    Returns:
        The loaded object (a checkpoint dict or a state dict).

    Raises:
        UntrustedCheckpointError: The pickle needs a global outside
            :data:`ALLOWED_GLOBALS` and checkpoints are not trusted.
        UnreadableCheckpointError: The file is missing, empty, a directory,
            truncated, or not a checkpoint.
    """
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)
        source = path
        if osp.isdir(path):
            raise UnreadableCheckpointError(
                f'checkpoint {path} is a directory; give the checkpoint file '
                '(.pth) itself.')
        if not osp.exists(path):
            raise UnreadableCheckpointError(
                f'checkpoint {path} does not exist; check the path.')
        if osp.getsize(path) == 0:
            raise UnreadableCheckpointError(
                f'checkpoint {path} is empty (0 bytes): an interrupted save '
                'or copy? Use another checkpoint, or copy it again.')
        if path.endswith('.safetensors'):
            return _load_safetensors(path, map_location)
        # torch.load refuses mmap for the legacy (non-zip) format.
        mmap = mmap and zipfile.is_zipfile(path)
    else:
        source = getattr(path, 'name', None) or '<in-memory checkpoint>'
        mmap = False
    return _guarded_load(
        functools.partial(torch.load, path, map_location=map_location,
                          mmap=mmap), source, path)


def load_checkpoint_url(url, model_dir=None, map_location=None,
                        progress=True, check_hash=False, file_name=None):
    """:func:`torch.hub.load_state_dict_from_url` (download to the torch
    hub cache, then load) with the safety of :func:`load_checkpoint_file`.

    mmengine's ``http(s)://``, ``torchvision://``, ``open-mmlab://`` and
    ``mmcls://`` schemes end here (see :mod:`flexvit_mm.compat`). Args as
    in :func:`torch.hub.load_state_dict_from_url`.
    """
    return _guarded_load(
        functools.partial(torch.hub.load_state_dict_from_url, url,
                          model_dir=model_dir, map_location=map_location,
                          progress=progress, check_hash=check_hash,
                          file_name=file_name), url, None)


def _guarded_load(load, source, file):
    """``load(weights_only=...)``: with full pickle if checkpoints are
    trusted, else weights-only with :data:`ALLOWED_GLOBALS`; failures
    become our errors."""
    trusted = checkpoints_trusted()
    try:
        if trusted:
            return load(weights_only=False)
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return load(weights_only=True)
    except Exception as error:
        readable = _readable_error(error, source, file)
        if readable is error:
            raise
        raise readable from error


def state_dict_of(checkpoint: Any, source: str) -> Mapping[str, Any]:
    """The model weights in a loaded checkpoint: its ``state_dict`` entry,
    or the checkpoint itself when it is a bare state dict.

    Args:
        checkpoint: What :func:`load_checkpoint_file` returned.
        source (str): The file's name in messages.

    Returns:
        Mapping[str, Any]: The state dict.

    Raises:
        CheckpointMismatchError: It holds no state dict.
    """
    state = checkpoint
    if isinstance(checkpoint, Mapping) and 'state_dict' in checkpoint:
        state = checkpoint['state_dict']
    if not isinstance(state, Mapping) or not all(
            isinstance(key, str) for key in state):
        raise CheckpointMismatchError(
            f'checkpoint {source} holds no state dict (it is a '
            f'{type(checkpoint).__name__}, not a dict of weights). Is it a '
            'checkpoint of a model at all?')
    return state


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    # What mmengine loads weights into: the model inside DDP-style wrappers
    # and TTA models.
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def _revised(keys: Iterable[str]) -> List[str]:
    # mmengine's load_checkpoint strips a DDP wrapper's 'module.' prefix.
    return [re.sub(r'^module\.', '', key) for key in keys]


def _shape(value) -> Optional[tuple]:
    return tuple(value.shape) if hasattr(value, 'shape') else None


def _few(items: List[str], limit: int = 5) -> str:
    shown = ', '.join(items[:limit])
    more = len(items) - limit
    return shown + (f', ... ({more} more)' if more > 0 else '')


def check_state_dict_fits(model: torch.nn.Module, state_dict: Mapping,
                          source: str) -> None:
    """Refuse a state dict that is not exactly the model's.

    The model is unwrapped and keys are revised as mmengine's
    ``load_checkpoint`` does (DDP and TTA wrappers; a leading ``module.``
    is stripped); shapes are compared key by key.

    Args:
        model (nn.Module): The model the weights are for.
        state_dict (Mapping): The checkpoint's state dict.
        source (str): The file's name in messages.

    Raises:
        CheckpointMismatchError: Some keys are missing, unexpected or
            mis-shaped; the message counts each kind and shows a few.
    """
    expected = _unwrapped(model).state_dict()
    given = collections.OrderedDict(
        zip(_revised(state_dict.keys()), state_dict.values()))
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    misshaped = [
        f'{key} {_shape(given[key])} vs {_shape(value)} in the model'
        for key, value in expected.items()
        if key in given and _shape(given[key]) != _shape(value)
    ]
    if not (missing or unexpected or misshaped):
        return
    parts = []
    if missing:
        parts.append(f'{len(missing)} missing ({_few(missing)})')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected ({_few(unexpected)})')
    if misshaped:
        parts.append(f'{len(misshaped)} mis-shaped ({_few(misshaped)})')
    fitting = len(expected) - len(missing) - len(misshaped)
    raise CheckpointMismatchError(
        f'checkpoint {source} does not fit the model of this config: '
        f'{fitting} of the model\'s {len(expected)} keys fit; '
        f'{"; ".join(parts)}. Is it a checkpoint of another model or config '
        '(other anchors, widths, variant or task), or do --cfg-options '
        'differ from the training run\'s? Official SN-Netv2/SHViT weights '
        'need the converters in tools/model_converters/ first.')


def load_model_weights(model: torch.nn.Module, path: str) -> dict:
    """Load a checkpoint's weights into ``model``, refusing one that does
    not fit it exactly (:func:`check_state_dict_fits`).

    Args:
        model (nn.Module): The model to fill.
        path (str): The checkpoint file.

    Returns:
        dict: The loaded checkpoint (with its ``meta``, if any).
    """
    checkpoint = load_checkpoint_file(path)
    state = state_dict_of(checkpoint, path)
    check_state_dict_fits(model, state, path)
    _unwrapped(model).load_state_dict(
        dict(zip(_revised(state.keys()), state.values())), strict=True)
    return checkpoint
