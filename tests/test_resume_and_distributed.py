"""Resuming continues exactly; two gloo ranks end with identical weights."""
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from .conftest import (CONFIGS, REPO, data_root_options, free_port, latest_metrics,
                       load_checkpoint, run_tool, tool_env)


def test_resume_continues_from_saved_iteration(synthetic, tmp_path):
    config = osp.join(CONFIGS, 'cls_imagenet_deterministic.py')
    options = data_root_options(synthetic('imagenet'))
    straight = str(tmp_path / 'straight')
    run_tool('tools/train.py', config, '--work-dir', straight,
             '--no-validate', '--cfg-options', *options)

    interrupted = str(tmp_path / 'interrupted')
    run_tool('tools/train.py', config, '--work-dir', interrupted,
             '--no-validate', '--cfg-options', 'train_cfg.max_iters=3',
             *options)
    assert not osp.exists(osp.join(interrupted, 'iter_6.pth'))
    resumed = run_tool('tools/train.py', config, '--work-dir', interrupted,
                       '--no-validate', '--resume', '--cfg-options',
                       *options)
    log = resumed.stdout + resumed.stderr
    assert 'resumed epoch: 0, iter: 3' in log
    trained = [int(i) for i in re.findall(r'Iter\(train\) \[\s*(\d+)/6\]',
                                          log)]
    assert trained == [4, 5, 6], trained

    a, b = load_checkpoint(osp.join(straight, 'iter_6.pth')), load_checkpoint(
        osp.join(interrupted, 'iter_6.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == 6
    for key, value in a['state_dict'].items():
        torch.testing.assert_close(b['state_dict'][key], value,
                                   rtol=0, atol=0)
    state_a = a['optimizer']['state']
    state_b = b['optimizer']['state']
    assert state_a.keys() == state_b.keys() and state_a
    for index in state_a:
        for name, value in state_a[index].items():
            torch.testing.assert_close(state_b[index][name], value,
                                       rtol=0, atol=0)

    # The resume loaded the optimizer state of iter_3, not a fresh one:
    # AdamW's step counter went on from 3.
    steps = {float(s['step']) for s in state_b.values()}
    assert steps == {6.0}


def test_resume_from_explicit_checkpoint_path(synthetic, tmp_path):
    config = osp.join(CONFIGS, 'cls_imagenet_deterministic.py')
    options = data_root_options(synthetic('imagenet'))
    first = str(tmp_path / 'first')
    run_tool('tools/train.py', config, '--work-dir', first, '--no-validate',
             '--cfg-options', 'train_cfg.max_iters=3', *options)
    second = str(tmp_path / 'second')
    proc = run_tool('tools/train.py', config, '--work-dir', second,
                    '--no-validate', '--resume',
                    osp.join(first, 'iter_3.pth'), '--cfg-options', *options)
    trained = re.findall(r'Iter\(train\) \[\s*(\d+)/6\]',
                         proc.stdout + proc.stderr)
    assert [int(i) for i in trained] == [4, 5, 6]
    assert osp.isfile(osp.join(second, 'iter_6.pth'))


def _dist_tool(script, *args):
    """Run tools/dist_train.sh or dist_test.sh with 2 processes (gloo)."""
    env = tool_env(PYTHON=sys.executable, PORT=str(free_port()))
    proc = subprocess.run(['bash', osp.join(REPO, 'tools', script), *args],
                          cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def test_two_process_gloo_training_ends_with_identical_weights(
        synthetic, tmp_path):
    config = osp.join(CONFIGS, 'dist_seg_ade20k.py')
    work_dir = str(tmp_path / 'dist')
    options = data_root_options(synthetic('ade20k'))
    _dist_tool('dist_train.sh', config, '2', '--work-dir', work_dir,
               '--cfg-options', *options)

    before = [load_checkpoint(osp.join(work_dir, f'rank{r}_before.pth'))
              for r in (0, 1)]
    after = [load_checkpoint(osp.join(work_dir, f'rank{r}_after.pth')) for r in (0, 1)]
    assert [r['world_size'] for r in after] == [2, 2]
    final = after[0]['state_dict']
    for key, value in after[1]['state_dict'].items():
        torch.testing.assert_close(value, final[key], rtol=0, atol=0)
    # The ranks agree because DDP averaged their gradients over different
    # batches, not because nothing moved.
    changed = [
        key for key, value in before[0]['state_dict'].items()
        if value.is_floating_point() and not torch.equal(value, final[key])
    ]
    assert len(changed) > len(final) // 2
    saved = load_checkpoint(osp.join(work_dir, 'iter_4.pth'))['state_dict']
    for key, value in saved.items():
        torch.testing.assert_close(value, final[key], rtol=0, atol=0)

    # The distributed test tool evaluates the result on both ranks.
    test_dir = str(tmp_path / 'dist_test')
    _dist_tool('dist_test.sh', config, osp.join(work_dir, 'iter_4.pth'), '2',
               '--work-dir', test_dir, '--cfg-options', *options)
    assert 'mIoU' in latest_metrics(test_dir)


_TEARDOWN_SCRIPT = """
import os, sys
from datetime import timedelta
from types import SimpleNamespace
import torch, torch.distributed as dist, torch.nn as nn
import flexvit_mm
from flexvit_mm.cli.common import finish_distributed
from mmengine.model import MMDistributedDataParallel

def gloo_threads():
    names = [open(f'/proc/self/task/{t}/comm').read()
             for t in os.listdir('/proc/self/task')]
    return sum('gloo' in name for name in names)

# A stuck collective raises instead of hanging the test.
dist.init_process_group('gloo', timeout=timedelta(seconds=120))
runner = SimpleNamespace(model=MMDistributedDataParallel(module=nn.Linear(2, 2)))
dist.all_reduce(torch.ones(2))
running = gloo_threads()
if FIXED:
    finish_distributed(runner)
else:
    dist.barrier()
    dist.destroy_process_group()
# One file per rank: two ranks printing to one pipe interleave.
with open(os.path.join(sys.argv[1], 'rank' + os.environ['RANK']), 'w') as f:
    f.write(f'{running} {gloo_threads()} {type(runner.model).__name__}')
if not FIXED:
    # The unfixed teardown is the defect itself: at exit it can abort or
    # (seen once, in CI) hang. The threads are counted; skip the teardown.
    os._exit(0)
"""


@pytest.mark.parametrize('fixed', [False, True])
def test_tools_stop_gloo_threads_before_the_interpreter_exits(
        fixed, tmp_path):
    # A destroyed process group kept alive by the DDP wrapper leaves gloo's
    # threads running into interpreter shutdown, where they occasionally
    # abort a finished dist_test.sh rank. finish_distributed (called by
    # tools/train.py and tools/test.py) lets them end first.
    script = tmp_path / 'teardown.py'
    script.write_text(_TEARDOWN_SCRIPT.replace('FIXED', str(fixed)))
    # --standalone: torchrun binds its own free port (no pick-then-bind race).
    run_tool('-m', 'torch.distributed.run', '--standalone',
             '--nproc_per_node', '2', str(script), str(tmp_path), timeout=300)
    for rank in (0, 1):
        running, left, model = (tmp_path / f'rank{rank}').read_text().split()
        assert int(running) > 0
        if fixed:
            assert (left, model) == ('0', 'Linear')
        else:
            assert left == running and model == 'MMDistributedDataParallel'
