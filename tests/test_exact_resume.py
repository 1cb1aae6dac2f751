"""An interrupted run resumes exactly: the demo config with its random
pipeline, 20 iterations + --resume to 40 equals 40 straight, bit for bit;
a moved work dir resumes; resuming a finished run changes nothing."""
import hashlib
import os
import os.path as osp
import random
import shutil
import uuid

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from flexvit_mm.cli.common import UserInputError
from flexvit_mm.cli.train import _existing_run
from flexvit_mm.engine import StitchingInitHook
from flexvit_mm.engine.rng import get_rng_state, isolated_rng, set_rng_state

from .conftest import REPO, data_root_options, load_checkpoint, run_tool

DEMO = osp.join(REPO, 'configs', 'demo',
                'snnetv2_tiny_600i_synthetic-imagenet.py')


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    """A generated ImageNet of 330 training images: the demo's batches of
    16 roll over into a second epoch (mmengine restarts the loader) only
    after iteration 21, so the 40 iterations cross one epoch boundary."""
    from flexvit_mm.datasets.synthetic import make_synthetic
    out = str(tmp_path_factory.mktemp('imagenet_resume'))
    return make_synthetic('imagenet', out, num_train=33, num_val=1,
                          num_classes=10, img_size=(48, 48))


def _train(work_dir, *extra, resume=False, expect_ok=True, options=()):
    return run_tool('tools/train.py', DEMO, '--work-dir', work_dir,
                    *(['--resume'] if resume else []), *extra,
                    '--cfg-options', 'default_hooks.logger.interval=10',
                    *options, expect_ok=expect_ok)


def _assert_bit_identical(path_a, path_b):
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    assert a['meta']['iter'] == b['meta']['iter']
    assert a['state_dict'].keys() == b['state_dict'].keys()
    differ = [k for k, v in a['state_dict'].items()
              if not torch.equal(v, b['state_dict'][k])]
    assert not differ, f'{len(differ)} weights differ, e.g. {differ[:3]}'
    state_a, state_b = a['optimizer']['state'], b['optimizer']['state']
    assert state_a and state_a.keys() == state_b.keys()
    for index, values in state_a.items():
        for name, value in values.items():
            assert torch.equal(value, state_b[index][name]), (index, name)


@pytest.fixture(scope='module')
def demo_runs(imagenet, tmp_path_factory):
    """The demo config trained 40 iterations straight, and 20 iterations
    in a work dir that is then moved and resumed there to 40."""
    root = tmp_path_factory.mktemp('demo_runs')
    options = data_root_options(imagenet) + [
        'default_hooks.checkpoint.interval=20']
    straight = str(root / 'straight')
    _train(straight, options=options + ['train_cfg.max_iters=40'])
    first = str(root / 'first')
    _train(first, options=options + ['train_cfg.max_iters=20'])
    moved = str(root / 'moved')
    shutil.move(first, moved)
    resumed = _train(moved, resume=True,
                     options=options + ['train_cfg.max_iters=40'])
    return dict(straight=straight, first=first, moved=moved,
                log=resumed.stdout + resumed.stderr,
                options=options + ['train_cfg.max_iters=40'])


def test_resume_of_the_demo_config_is_bit_exact(demo_runs):
    _assert_bit_identical(osp.join(demo_runs['straight'], 'iter_40.pth'),
                          osp.join(demo_runs['moved'], 'iter_40.pth'))
    log = demo_runs['log']
    assert 'resumed epoch: 0, iter: 20' in log
    assert 'Advance dataloader 20 steps' in log
    assert 'continue from iteration 20 of the saved run' in log


def test_moved_work_dir_resumes_from_its_own_checkpoint(demo_runs):
    moved = demo_runs['moved']
    assert not osp.exists(demo_runs['first'])
    # mmengine wrote the old absolute path; it is read, not rewritten.
    assert f'--resume: continuing from {moved}/iter_20.pth' in \
        demo_runs['log']
    assert osp.isfile(osp.join(moved, 'iter_40.pth'))


def _snapshot(folder):
    files = {}
    for where, _, names in os.walk(folder):
        for name in names:
            path = osp.join(where, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, folder)] = (
                    os.stat(path).st_mtime_ns,
                    hashlib.sha1(f.read()).hexdigest())
    return files


def test_resuming_a_finished_run_says_so_and_changes_nothing(demo_runs):
    straight = demo_runs['straight']
    before = _snapshot(straight)
    proc = _train(straight, resume=True, options=demo_runs['options'])
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and 'Traceback' not in log
    assert (f'the checkpoint {straight}/iter_40.pth is at iter 40, and '
            'train_cfg.max_iters is 40, so the run is finished') in log
    assert '--resume --cfg-options train_cfg.max_iters=N (N > 40' in log
    assert 'Iter(train)' not in log
    assert _snapshot(straight) == before


def test_drop_path_and_validation_do_not_break_exact_resume(
        imagenet, tmp_path):
    """Drop path draws from torch's stream in every training step, which a
    resumed run does not replay; the straight run also validates in
    between, which the resumed one does not repeat."""
    options = data_root_options(imagenet) + [
        f'model.backbone.anchors.{i}.drop_path_rate=0.2' for i in (0, 1)
    ] + ['default_hooks.checkpoint.interval=3', 'train_cfg.val_interval=3']
    straight = str(tmp_path / 'straight')
    proc = _train(straight, options=options + ['train_cfg.max_iters=6'])
    # validated after iterations 3 and 6
    assert (proc.stdout + proc.stderr).count('accuracy/top1:') == 2
    interrupted = str(tmp_path / 'interrupted')
    _train(interrupted, options=options + ['train_cfg.max_iters=3'])
    _train(interrupted, resume=True,
           options=options + ['train_cfg.max_iters=6'])
    _assert_bit_identical(osp.join(straight, 'iter_6.pth'),
                          osp.join(interrupted, 'iter_6.pth'))


def test_last_checkpoint_that_cannot_be_found_is_refused(imagenet, tmp_path):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    last = work_dir / 'last_checkpoint'
    last.write_text('/elsewhere/work/iter_20.pth')
    proc = _train(str(work_dir), resume=True, expect_ok=False,
                  options=data_root_options(imagenet))
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert "names the checkpoint '/elsewhere/work/iter_20.pth'" in \
        proc.stderr
    assert '--resume WORK_DIR/iter_N.pth' in proc.stderr
    assert last.read_text() == '/elsewhere/work/iter_20.pth'
    assert sorted(os.listdir(work_dir)) == ['last_checkpoint']


def test_last_checkpoint_resolution(tmp_path):
    def checkpoint(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'x')
        return str(path)

    def work_dir_naming(name, named):
        folder = tmp_path / name
        folder.mkdir()
        (folder / 'last_checkpoint').write_text(named)
        return str(folder)

    # A copied work dir: its own file, not the original's, which exists.
    original = checkpoint(tmp_path / 'original' / 'iter_4.pth')
    copy = work_dir_naming('copy', original)
    own = checkpoint(tmp_path / 'copy' / 'iter_4.pth')
    assert _existing_run(copy) == own
    # A relative name is relative to the work dir.
    relative = work_dir_naming('relative', 'iter_2.pth')
    inside = checkpoint(tmp_path / 'relative' / 'iter_2.pth')
    assert _existing_run(relative) == inside
    # CheckpointHook(out_dir=...) keeps checkpoints outside the work dir.
    outside = checkpoint(tmp_path / 'out_dir' / 'work' / 'iter_8.pth')
    assert _existing_run(work_dir_naming('work', outside)) == outside
    # Neither where it says nor here: refused, unless only asked whether
    # the work dir holds a run.
    lost = work_dir_naming('lost', str(tmp_path / 'gone' / 'iter_6.pth'))
    with pytest.raises(UserInputError, match='iter_6.pth'):
        _existing_run(lost)
    assert _existing_run(lost, strict=False).endswith('iter_6.pth')
    # No last_checkpoint: the highest iteration, not the newest file.
    bare = tmp_path / 'bare'
    newest_first = [checkpoint(bare / f'iter_{i}.pth') for i in (10, 9)]
    assert _existing_run(str(bare)) == newest_first[0]


def _draws():
    return (random.random(), np.random.rand(), torch.rand(1).item())


def _same_streams(a, b):
    return (a['python'] == b['python']
            and a['numpy'][0] == b['numpy'][0]
            and torch.equal(a['numpy'][1], b['numpy'][1])
            and a['numpy'][2:] == b['numpy'][2:]
            and torch.equal(a['torch'], b['torch']))


def test_isolated_rng_leaves_every_stream_as_it_was():
    before = get_rng_state()
    expected = _draws()
    set_rng_state(before)
    with pytest.raises(RuntimeError):
        with isolated_rng():
            _draws()
            raise RuntimeError('the block fails')
    assert _draws() == expected


def test_stitching_init_draws_nothing_from_the_global_streams(
        imagenet, tmp_path):
    """The least-squares init reads its images through the random training
    pipeline, which a resumed run skips: the streams must be untouched."""
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict(
        dict(option.split('=', 1) for option in data_root_options(imagenet)))
    cfg.work_dir = str(tmp_path)
    cfg.experiment_name = f'init_{uuid.uuid4().hex[:8]}'
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, StitchingInitHook))
    dataset = runner.train_dataloader.dataset
    before = get_rng_state()
    dataset[0]  # the pipeline draws: the check below can see a draw
    assert not _same_streams(before, get_rng_state())

    set_rng_state(before)
    layer = runner.model.backbone.stitch_layers[0][0].weight
    initial = layer.detach().clone()
    hook.before_train(runner)
    assert not torch.equal(layer, initial)  # it fitted
    assert _same_streams(before, get_rng_state())
