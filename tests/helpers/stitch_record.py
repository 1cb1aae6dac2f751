"""A test hook: every rank records the stitch it trained in each iteration
and its final weights."""
import json
import os.path as osp

import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from flexvit_mm.models.stitching.selection import find_stitched_backbone


@HOOKS.register_module()
class RecordTrainStitchHook(Hook):
    priority = 'LOW'

    def __init__(self):
        self.trained = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        backbone = find_stitched_backbone(runner.model)
        self.trained[runner.iter] = dict(
            stitch=backbone._train_stitch_id,
            loss=float(outputs['loss']) if outputs else None)

    def after_train(self, runner):
        rank, world_size = get_dist_info()
        with open(osp.join(runner.work_dir, f'stitches_rank{rank}.json'),
                  'a') as f:
            f.write(json.dumps(dict(world_size=world_size,
                                    trained=self.trained)) + '\n')
        backbone = find_stitched_backbone(runner.model)
        torch.save({k: v.detach().cpu().clone()
                    for k, v in backbone.state_dict().items()},
                   osp.join(runner.work_dir, f'weights_rank{rank}.pth'))
