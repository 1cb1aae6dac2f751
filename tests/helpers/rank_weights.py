"""A test hook: every rank saves its weights before and after training."""
import os.path as osp

import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SaveRankWeightsHook(Hook):

    def _save(self, runner, when):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        rank, world_size = get_dist_info()
        torch.save(
            dict(world_size=world_size,
                 state_dict={k: v.detach().cpu().clone()
                             for k, v in model.state_dict().items()}),
            osp.join(runner.work_dir, f'rank{rank}_{when}.pth'))

    def before_train(self, runner):
        self._save(runner, 'before')

    def after_train(self, runner):
        self._save(runner, 'after')
