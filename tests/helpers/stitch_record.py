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


def train_on_two_ranks(config, work_dir, data_options, iters=6):
    """Train ``config`` (which must use RecordTrainStitchHook) with 2 gloo
    processes through tools/dist_train.sh, check both ranks trained the
    same stitches and ended with identical weights; returns the stitches
    trained in each iteration."""
    import subprocess
    import sys

    from tests.conftest import REPO, free_port, load_checkpoint, tool_env
    env = tool_env(PYTHON=sys.executable, PORT=str(free_port()))
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config, '2',
         '--work-dir', work_dir, '--no-validate', '--cfg-options',
         *data_options],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    records = [read_records(work_dir, rank) for rank in (0, 1)]
    assert [size for size, _ in records] == [2, 2]
    stitches = [[trained[i]['stitch'] for i in range(iters)]
                for _, trained in records]
    assert stitches[0] == stitches[1]
    weights = [load_checkpoint(osp.join(work_dir, f'weights_rank{r}.pth'))
               for r in (0, 1)]
    for key, value in weights[0].items():  # frozen W0 included
        torch.testing.assert_close(weights[1][key], value, rtol=0, atol=0)
    return stitches[0]


def read_records(work_dir, rank=0):
    """(world size, {iteration: dict(stitch, loss)}) of one rank's runs."""
    with open(osp.join(work_dir, f'stitches_rank{rank}.json')) as f:
        runs = [json.loads(line) for line in f]
    trained = {}
    for run in runs:
        trained.update({int(k): v for k, v in run['trained'].items()})
    return runs[-1]['world_size'], trained
