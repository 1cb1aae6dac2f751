"""Resume with the random streams of the uninterrupted run."""
import logging
from typing import Optional

import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from ..rng import get_rng_state, set_rng_state


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save every rank's global random streams in each checkpoint and put
    them back on resume, so a resumed run draws the numbers the
    uninterrupted run drew.

    mmengine restores the weights, optimizer, schedulers and iteration, and
    an iteration-based loop re-reads (skips) the batches already trained,
    which replays the data pipeline's draws. It does not replay the draws
    of the training steps themselves (drop path, dropout, batch
    augmentations such as Mixup), so without this hook a resumed run goes on
    from other random states.

    - **Saving.** A checkpoint gets, in ``meta['rng_states']``, the state of
      ``random``, ``np.random``, torch's CPU and CUDA generators of every
      rank (:func:`~flexvit_mm.engine.rng.get_rng_state`) as they were right
      after the last trained iteration. mmengine writes checkpoints on
      rank 0 only, so in a distributed run the ranks gather their states
      when the run's ``CheckpointHook`` is about to save, and before each
      validation (for ``save_best``).
    - **Restoring.** On resume, each rank's state is put back right before
      the first new batch is read: after mmengine's skip of the trained
      batches (an iteration-based loop), or at the start of the first epoch
      (an epoch-based loop, which resumes at an epoch boundary).
    - **Validation** runs with the streams shielded
      (:func:`~flexvit_mm.engine.rng.isolated_rng`'s snapshot and restore):
      whether, when and how often a run validates does not change its
      training draws, which a resumed run (not repeating the validation at
      its checkpoint) relies on.

    A checkpoint without saved states (one written without this hook) or
    from another number of processes or CUDA devices resumes as mmengine
    does, with a warning that the random streams start afresh.
    ``tools/train.py`` adds this hook to every run whose config lacks it.
    """
    # after_train_iter must run before CheckpointHook's (VERY_LOW) save.
    priority = 'LOW'

    def __init__(self):
        # (finished iterations, [state of each rank]) for a checkpoint
        # about to be written in a distributed run.
        self._gathered: Optional[tuple] = None
        # The states before a validation, put back after it.
        self._before_val: Optional[dict] = None
        # (iteration, saved states) of the checkpoint loaded, if any.
        self._loaded: Optional[tuple] = None
        self._pending: Optional['_RestoreAfterSkip'] = None

    # -- saving -----------------------------------------------------------

    @staticmethod
    def _checkpoint_hook(runner) -> Optional[CheckpointHook]:
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook):
                return hook
        return None

    def _gather(self, finished_iters: int) -> None:
        self._gathered = (finished_iters, all_gather_object(get_rng_state()))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if get_dist_info()[1] == 1:
            return  # rank 0 reads its own state when it saves
        # The same test CheckpointHook.after_train_iter makes next.
        saver = self._checkpoint_hook(runner)
        if saver is not None and not saver.by_epoch and (
                self.every_n_train_iters(runner, saver.interval,
                                         saver.save_begin) or
                (saver.save_last and self.is_last_train_iter(runner))):
            self._gather(runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        if get_dist_info()[1] == 1:
            return
        saver = self._checkpoint_hook(runner)
        if saver is not None and saver.by_epoch and (
                self.every_n_epochs(runner, saver.interval, saver.save_begin)
                or (saver.save_last and self.is_last_train_epoch(runner))):
            self._gather(runner.iter)

    def before_val(self, runner) -> None:
        self._before_val = get_rng_state()
        if get_dist_info()[1] > 1:
            self._gather(runner.iter)

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            set_rng_state(self._before_val)
            self._before_val = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.setdefault('meta', {})
        finished = meta.get('iter', runner.iter)
        world_size = get_dist_info()[1]
        if world_size == 1:
            # Inside a validation (a best checkpoint) the training's
            # streams are those from before it.
            states = [self._before_val if self._before_val is not None
                      else get_rng_state()]
        elif self._gathered is not None and self._gathered[0] == finished:
            states = self._gathered[1]
        else:
            print_log(
                'RNGStateHook: this checkpoint was not written by the '
                "run's CheckpointHook at an iteration it planned to save; "
                'it holds no random states, and a run resumed from it '
                'will not be exact.', logger='current',
                level=logging.WARNING)
            return
        meta['rng_states'] = dict(world_size=world_size, states=states)

    # -- restoring ----------------------------------------------------------

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta') or {}
        self._loaded = (meta.get('iter'), meta.get('rng_states'))

    def _restorable_state(self, runner) -> Optional[dict]:
        """This rank's saved state, if the run resumed from a checkpoint
        whose states fit this run; None otherwise (with a warning when
        they do not fit)."""
        iteration, saved = self._loaded
        self._loaded = None
        if not iteration or runner.iter != iteration:
            return None  # load_from: weights only, training starts afresh
        rank, world_size = get_dist_info()
        problem = None
        if saved is None:
            problem = 'holds no random states (written without RNGStateHook)'
        elif saved['world_size'] != world_size:
            problem = (f'was written by {saved["world_size"]} processes, '
                       f'this run has {world_size}')
        else:
            cuda = saved['states'][rank]['cuda']
            if cuda and len(cuda) != torch.cuda.device_count():
                problem = (f'holds the states of {len(cuda)} CUDA devices '
                           f'per process, this run sees '
                           f'{torch.cuda.device_count()}')
        if problem:
            print_log(
                f'RNGStateHook: the checkpoint {problem}: the random streams '
                'start afresh, so this resumed run will not draw what the '
                'uninterrupted run drew.', logger='current',
                level=logging.WARNING)
            return None
        return saved['states'][rank]

    def before_train_epoch(self, runner) -> None:
        if self._loaded is None:
            return
        state = self._restorable_state(runner)
        if state is None:
            return
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            # The loop now reads and drops the batches of the iterations
            # already trained (drawing what the saved run drew for them);
            # the state is due right after that, before the next batch.
            self._pending = _RestoreAfterSkip(loop, state, runner.iter)
            loop.dataloader_iterator = self._pending
        else:
            set_rng_state(state)
        print_log(
            f'RNGStateHook: the random streams of every rank continue from '
            f'iteration {runner.iter} of the saved run.', logger='current')

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        if not pending.restored:
            # The loop did not skip through the iterator as mmengine 0.10
            # does: restore now, for the model at least, and say so.
            pending.finish()
            print_log(
                'RNGStateHook: the loop read its first batch without '
                'skipping the trained ones; the random state was restored '
                'after that batch, so its augmentation may differ from the '
                'uninterrupted run.', logger='current',
                level=logging.WARNING)


class _RestoreAfterSkip:
    """Stands in for an IterBasedTrainLoop's data iterator while the loop
    skips ``skip`` batches, then restores ``state`` and hands the loop its
    iterator back before the next batch is read.

    Args:
        loop (IterBasedTrainLoop): The loop.
        state (dict): A snapshot of :func:`get_rng_state`.
        skip (int): The batches the loop skips.
    """

    def __init__(self, loop, state: dict, skip: int):
        self._loop = loop
        self._iterator = loop.dataloader_iterator
        self._state = state
        self._left = skip
        self.restored = False

    def __iter__(self):
        return self

    def finish(self) -> None:
        set_rng_state(self._state)
        self._loop.dataloader_iterator = self._iterator
        self.restored = True

    def __next__(self):
        if self._left > 0:
            self._left -= 1
            return next(self._iterator)
        self.finish()
        return next(self._iterator)
