"""The global random streams of a process: read, set, and shielded.

A training run draws from four global streams: Python's ``random`` and
numpy's legacy ``np.random`` (the data pipelines' transforms), torch's CPU
generator and every initialised CUDA device's (dropout, drop path, batch
augmentations, the DataLoader's base seed). Whatever else consumes them
shifts every later draw, so work done outside the training proper (a hook's
own data reading, validation) must leave them as it found them.
``torch.random.fork_rng`` covers only torch's generators, not ``random``
and numpy, hence :func:`isolated_rng`.
"""
import contextlib
import random

import numpy as np
import torch

__all__ = ['get_rng_state', 'set_rng_state', 'isolated_rng']


def get_rng_state() -> dict:
    """Snapshot of this process's global random streams.

    Returns:
        dict: ``python``, ``numpy``, ``torch`` and ``cuda`` (one state per
        device, empty when CUDA is not initialised). Only tensors, numbers,
        strings and tuples, so a checkpoint holding it loads with
        ``torch.load(weights_only=True)``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return dict(
        python=random.getstate(),
        numpy=(kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
               int(has_gauss), float(cached)),
        torch=torch.get_rng_state(),
        # Reading the CUDA states would initialise CUDA in a process that
        # never used it; an uninitialised device has drawn nothing.
        cuda=tuple(torch.cuda.get_rng_state_all())
        if torch.cuda.is_available() and torch.cuda.is_initialized() else
        ())


def set_rng_state(state: dict) -> None:
    """Put the global random streams back where :func:`get_rng_state`
    found them.

    Args:
        state (dict): A snapshot of :func:`get_rng_state`.

    Raises:
        ValueError: The snapshot holds CUDA states for another number of
            devices than this process sees.
    """
    version, internal, gauss = state['python']
    # A checkpoint may hand the tuples back as lists.
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos,
                         has_gauss, cached))
    torch.set_rng_state(state['torch'])
    cuda = state['cuda']
    if cuda:
        if len(cuda) != torch.cuda.device_count():
            raise ValueError(
                f'The random state holds {len(cuda)} CUDA device(s), this '
                f'process sees {torch.cuda.device_count()}.')
        torch.cuda.set_rng_state_all(list(cuda))


@contextlib.contextmanager
def isolated_rng():
    """Run a block without consuming the global random streams.

    The block draws from them as usual; on exit (also by an exception)
    every stream is put back, so the draws of the code after it are those it
    would have made without the block.

    Example:
        >>> with isolated_rng():
        ...     batches = [dataset[i] for i in indices]  # random transforms
    """
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
