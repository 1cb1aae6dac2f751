"""FLOPs-grouped ("resource-constrained") stitch sampling during training."""
import math
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

from mmengine.dist import broadcast_object_list, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ...analysis.stitch_table import (load_or_compute_stitch_table,
                                      stitch_table_key)
from ...models.stitching.convert import IncompatibleCheckpointError
from ...models.stitching.sampler import FlopsGroupedSampler
from ...models.stitching.selection import find_stitched_backbone


@HOOKS.register_module()
class StitchSamplingHook(Hook):
    """Choose the stitch trained in every iteration.

    At the start of training the GFLOPs of every stitch are counted at
    ``input_shape`` (attention included) and cached in the work dir; the
    stitches are grouped by FLOPs (``gap`` GFLOPs) and every iteration picks
    a group uniformly, then a stitch in it.

    The draw is a pure function of the seed and the iteration, so every rank
    trains the **same** stitch in an iteration without communication, and a
    resumed run draws exactly the stitches the uninterrupted run would have.
    The sampler's state is stored in checkpoints and checked on resume.

    Args:
        gap (float): Grouping gap in GFLOPs: 1.0 for classification, 10.0
            for dense tasks (the official settings). Unused with
            ``uniform``.
        uniform (bool): Draw every stitch with the same probability, as
            SN-Net v1 does: all stitches form one group. Written this way,
            not as ``gap=float('inf')``, because an ``inf`` in a config
            cannot be dumped and read back (the run's saved config, a
            checkpoint's ``meta``). Defaults to False.
        input_shape (Sequence[int], optional): (H, W) at which FLOPs are
            counted. Defaults to the first anchor's ``img_size``.
        per_rank (bool): Official classification behaviour: each rank draws
            its own stitch (seeded by rank). Defaults to False.
        seed (int, optional): Defaults to the runner's seed.
        stitch_ids (Sequence[int], optional): Restrict training to these
            stitches. Defaults to every stitch.
    """
    priority = 'NORMAL'

    def __init__(self,
                 gap: float = 1.0,
                 input_shape: Optional[Sequence[int]] = None,
                 per_rank: bool = False,
                 seed: Optional[int] = None,
                 stitch_ids: Optional[Sequence[int]] = None,
                 uniform: bool = False):
        self.gap = math.inf if uniform else gap
        self.input_shape = tuple(input_shape) if input_shape else None
        self.per_rank = per_rank
        self.seed = seed
        self.stitch_ids = stitch_ids
        self.sampler: Optional[FlopsGroupedSampler] = None
        self._loaded_state = None

    def _input_shape(self, backbone):
        if self.input_shape:
            return self.input_shape
        return tuple(backbone.anchors[0].patch_embed.img_size)

    def before_train(self, runner) -> None:
        backbone = find_stitched_backbone(runner.model)
        table = shared_stitch_table(runner, backbone,
                                    self._input_shape(backbone))
        ids = self.stitch_ids or backbone.stitch_ids
        flops = {i: table[i]['flops'] / 1e9 for i in ids}
        seed = self.seed if self.seed is not None else (runner.seed or 0)
        self.sampler = FlopsGroupedSampler(
            flops, self.gap, seed=seed, per_rank=self.per_rank)
        if self._loaded_state is not None and runner._resume:
            # Refuses a checkpoint whose stitches or FLOPs differ.
            self.sampler.load_state_dict(self._loaded_state)
        print_log('StitchSamplingHook: ' + self.sampler.describe(),
                  logger='current')

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        stitch_id = self.sampler.sample(runner.iter, get_dist_info()[0])
        find_stitched_backbone(runner.model).set_train_stitch(stitch_id)
        runner.message_hub.update_info('train_stitch_id', stitch_id)

    def after_train(self, runner) -> None:
        find_stitched_backbone(runner.model).set_train_stitch(None)

    def _space_key(self, runner):
        backbone = find_stitched_backbone(runner.model)
        return stitch_table_key(backbone, self._input_shape(backbone))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.sampler is not None:
            meta = checkpoint.setdefault('meta', {})
            meta['stitch_sampler'] = self.sampler.state_dict()
            meta['stitch_space'] = self._space_key(runner)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta', {})
        self._loaded_state = meta.get('stitch_sampler')
        saved = meta.get('stitch_space')
        if not runner._resume or saved is None:
            return
        # Checked before the weights load, so that a checkpoint of another
        # stitched pair fails here, clearly, not in the optimizer state.
        current = self._space_key(runner)
        differences = [
            f'{key}: checkpoint {saved.get(key)}, config {value}'
            for key, value in current.items() if saved.get(key) != value
        ]
        if differences:
            raise IncompatibleCheckpointError(
                'Cannot resume: the checkpoint was trained with another '
                'stitched pair (' + '; '.join(differences) + '). Resume '
                'with the config it was trained with, or start a new run '
                'in another --work-dir.')


def task_input_shape(runner, backbone) -> Tuple[int, int]:
    """The input size a run trains at: its StitchSamplingHook's
    ``input_shape``, else the first anchor's ``img_size``."""
    for hook in runner.hooks:
        if isinstance(hook, StitchSamplingHook):
            return hook._input_shape(backbone)
    return tuple(backbone.anchors[0].patch_embed.img_size)


def shared_stitch_table(runner, backbone,
                        input_shape: Optional[Sequence[int]] = None
                        ) -> Dict[int, dict]:
    """The per-stitch FLOPs/params table at ``input_shape`` (default:
    :func:`task_input_shape`), the same on every rank: rank 0 counts it, or
    reads ``WORK_DIR/stitch_flops_HxW.json``, and broadcasts it."""
    shape = tuple(input_shape or task_input_shape(runner, backbone))
    table = [None]
    if get_dist_info()[0] == 0:
        table[0] = load_or_compute_stitch_table(
            backbone, shape,
            osp.join(runner.work_dir,
                     f'stitch_flops_{shape[0]}x{shape[1]}.json'))
    broadcast_object_list(table)
    return table[0]
