"""Bad command lines and mistakes in a config end with exit status 2 and a
message that names the problem and the fix, without a traceback, and leave
the user's files as they were: a value or argument a module does not take,
a misspelt module type, a launcher without its starter, output paths that
cannot be written, a stitch-id range past the last stitch. A refused run
leaves no empty log folder, and get_flops keeps an earlier table.

The first cases run the real tools in a subprocess; the variants of one
check call the tool's main through ``flexvit_mm.cli.run`` in-process (the
same code, without the interpreter start).
"""
import json
import os
import os.path as osp

import mmpretrain.registry
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope, init_default_scope

from flexvit_mm.cli import UserInputError, run
from flexvit_mm.cli import benchmark as benchmark_cli
from flexvit_mm.cli import convert_shvit, convert_snnetv2, export_stitch
from flexvit_mm.cli import get_flops as get_flops_cli
from flexvit_mm.cli import test as test_cli
from flexvit_mm.cli import train as train_cli
from flexvit_mm.cli.common import no_empty_run_left
from flexvit_mm.cli.config_errors import config_error
from flexvit_mm.models.stitching.selection import parse_stitch_ids

from .conftest import (CONFIGS, data_root_options, folder_digest, run_tool,
                       tool_env)

CONFIG = osp.join(CONFIGS, 'cls_snnetv2_tiny.py')  # 8 stitches: 0-3, 5-8
SEG_CONFIG = osp.join(CONFIGS, 'seg_snnetv2_tiny.py')
LAUNCH_ENV = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT',
              'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST',
              'OMPI_COMM_WORLD_LOCAL_RANK', 'OMPI_COMM_WORLD_RANK',
              'OMPI_COMM_WORLD_SIZE')


def _error(proc):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith('error: ') or '\nerror: ' in proc.stderr
    return proc.stderr


def _run_main(main, argv, capsys):
    """A tool's main through ``run``, as its script calls it; returns the
    message."""
    with pytest.raises(SystemExit) as info:
        run(main, argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ')
    return err




@pytest.fixture(autouse=True)
def no_local_rank_left(monkeypatch):
    """The tools' parse_args export LOCAL_RANK; the in-process runs must
    not leave it to the other tests of this process."""
    monkeypatch.delenv('LOCAL_RANK', raising=False)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """Weights of the tiny stitched pair (a file tools/test.py can load)."""
    cfg = Config.fromfile(CONFIG)
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny.pth')
    # A module-scoped fixture runs outside restore_default_scope: a scope
    # set here for good would make later tests of this process build from
    # mmpretrain's registries.
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


@pytest.fixture
def user_dir(tmp_path):
    """A work dir holding the user's own files, and its digest."""
    folder = tmp_path / 'mine'
    (folder / 'notes').mkdir(parents=True)
    (folder / 'notes' / 'todo.txt').write_text('keep me\n')
    (folder / 'stitches.json').write_text('[]\n')
    return str(folder), folder_digest(str(folder))


# ------------------------------------------------- the real tools, end to end
def test_invalid_stitch_id_in_the_config_says_how_to_pick_one(
        synthetic, checkpoint, tmp_path):
    work_dir = tmp_path / 'new' / 'w'
    proc = run_tool(
        'tools/test.py', CONFIG, checkpoint, '--work-dir', str(work_dir),
        '--cfg-options', 'model.backbone.stitch_id=4',
        *data_root_options(synthetic('imagenet')), expect_ok=False)
    message = _error(proc)
    assert 'SNNetv2' in message and 'stitch id 4' in message
    assert 'valid ids are 0-3, 5-8' in message
    assert '--stitch-id N' in message and 'Fix the config' in message
    # The Runner had made WORK_DIR/<timestamp>/ and dumped the config: a run
    # refused before it produced anything leaves no trace, not even the work
    # dir (and its parent) it created.
    assert not osp.exists(tmp_path / 'new')


@pytest.mark.parametrize('option, expected', [
    ('model.backbone.lora_rnak=4',
     ["SNNetv2", "takes no argument 'lora_rnak'", "Did you mean 'lora_rank'"]),
    ('model.backbone.type=SNNetV2',
     ["Unknown type 'SNNetV2'", 'no model of that name', "Did you mean "
      "'SNNetv2'?", 'custom_imports']),
])
def test_config_mistakes_found_while_building(option, expected, synthetic,
                                              user_dir):
    work_dir, before = user_dir
    proc = run_tool(
        'tools/train.py', CONFIG, '--work-dir', work_dir, '--cfg-options',
        option, *data_root_options(synthetic('imagenet')), expect_ok=False)
    message = _error(proc)
    for text in expected:
        assert text in message
    assert 'Fix the config (or the --cfg-options that set it)' in message
    # No log folder, no config dump; the user's files as they were.
    assert folder_digest(work_dir) == before


def test_launcher_without_its_starter(tmp_path):
    env = {k: v for k, v in tool_env().items() if k not in LAUNCH_ENV}
    proc = run_tool('tools/train.py', CONFIG, '--work-dir',
                    str(tmp_path / 'w'), '--launcher', 'pytorch',
                    expect_ok=False, env=env)
    message = _error(proc)
    assert '--launcher pytorch' in message and 'torchrun' in message
    assert 'RANK' in message and 'tools/dist_train.sh' in message
    assert 'drop --launcher' in message
    assert not osp.exists(tmp_path / 'w')


def test_work_dir_that_is_a_file(tmp_path):
    blocker = tmp_path / 'results'
    blocker.write_text('a file of the user\n')
    proc = run_tool('tools/train.py', CONFIG, '--work-dir', str(blocker),
                    expect_ok=False)
    message = _error(proc)
    assert f'--work-dir {blocker}: this is a file' in message
    assert 'Give the path of a folder' in message
    assert blocker.read_text() == 'a file of the user\n'


def test_stitch_id_range_past_the_last_stitch(synthetic, checkpoint,
                                              user_dir):
    work_dir, before = user_dir
    proc = run_tool('tools/test.py', CONFIG, checkpoint, '--work-dir',
                    work_dir, '--stitch-id', '6-9', '--cfg-options',
                    *data_root_options(synthetic('imagenet')),
                    expect_ok=False)
    message = _error(proc)
    assert "--stitch-id 6-9: The stitch-id range '6-9' runs past" in message
    assert 'the last 8' in message and 'valid ids are 0-3, 5-8' in message
    assert 'Did you mean 6-8?' in message
    assert folder_digest(work_dir) == before


# ----------------------------------------------- variants, in-process
@pytest.mark.parametrize('launcher, names', [
    ('slurm', 'SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST'),
    ('mpi', 'OMPI_COMM_WORLD_LOCAL_RANK'),
])
def test_other_launchers_without_their_starter(launcher, names, tmp_path,
                                               capsys, monkeypatch):
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    message = _run_main(test_cli.main, [
        CONFIG, __file__, '--work-dir', str(tmp_path / 'w'), '--launcher',
        launcher], capsys)
    assert f'--launcher {launcher}' in message and names in message
    assert 'drop --launcher' in message
    assert not osp.exists(tmp_path / 'w')


#: (main, argv, expected message) with ``{file}`` a regular file, ``{dir}``
#: a folder and ``{ckpt}`` the checkpoint.
UNDER_FILE = 'cannot be created, {file} is a file, not a folder'
OUTPUT_CASES = [
    pytest.param(train_cli.main, [CONFIG, '--work-dir', '{file}/w'],
                 '--work-dir {file}/w: ' + UNDER_FILE, id='train-work-dir'),
    pytest.param(test_cli.main, [CONFIG, '{ckpt}', '--work-dir', '{dir}/w',
                                 '--out', '{file}/preds.pkl'],
                 '--out {file}/preds.pkl: ' + UNDER_FILE, id='test-out-pkl'),
    pytest.param(test_cli.main, [CONFIG, '{ckpt}', '--work-dir', '{dir}/w',
                                 '--out', '{dir}/preds.pkl'],
                 '--out {dir}/preds.pkl: this is a folder; a file is needed',
                 id='test-out-pkl-folder'),
    pytest.param(test_cli.main, [SEG_CONFIG, '{ckpt}', '--work-dir',
                                 '{dir}/w', '--out', '{file}'],
                 '--out {file}: this is a file; a folder is needed',
                 id='test-out-mmseg-folder'),
    pytest.param(test_cli.main, [CONFIG, '{ckpt}', '--work-dir', '{dir}/w',
                                 '--show-dir', '{file}'],
                 '--show-dir {file}: this is a file; a folder is needed',
                 id='test-show-dir'),
    pytest.param(get_flops_cli.main, [CONFIG, '--no-latency', '--out-dir',
                                      '{file}/table'],
                 '--out-dir {file}/table: ' + UNDER_FILE, id='get-flops'),
    pytest.param(export_stitch.main, [CONFIG, '{ckpt}', '--stitch-id', '1',
                                      '--out', '{file}/export'],
                 '--out {file}/export: ' + UNDER_FILE, id='export'),
    pytest.param(convert_snnetv2.main, [CONFIG, '{ckpt}',
                                        '{file}/converted.pth'],
                 'dst {file}/converted.pth: ' + UNDER_FILE,
                 id='convert-snnetv2'),
    pytest.param(convert_shvit.main, ['{ckpt}', '{dir}/preds.pkl', '--arch',
                                      's1', '--force'],
                 'dst {dir}/preds.pkl: this is a folder; a file is needed',
                 id='convert-shvit'),
    pytest.param(benchmark_cli.main, [CONFIG, '--out', '{file}/speed.json'],
                 '--out {file}/speed.json: ' + UNDER_FILE, id='benchmark'),
]


@pytest.mark.parametrize('main, argv, expected', OUTPUT_CASES)
def test_output_paths_that_cannot_be_written(main, argv, expected, checkpoint,
                                             tmp_path, capsys):
    blocker = tmp_path / 'taken'
    blocker.write_text('the user\'s file\n')
    (tmp_path / 'preds.pkl').mkdir()
    names = dict(file=str(blocker), dir=str(tmp_path), ckpt=checkpoint)
    before = folder_digest(str(tmp_path))
    message = _run_main(main, [a.format(**names) for a in argv], capsys)
    assert expected.format(**names) in message
    assert folder_digest(str(tmp_path)) == before  # nothing written, nothing made


def test_stitch_id_ranges_are_taken_as_written():
    valid = (0, 1, 2, 3, 5, 6, 7, 8)
    assert parse_stitch_ids('2-6', valid) == [2, 3, 5, 6]  # gaps skipped
    assert parse_stitch_ids('0-8', valid) == list(valid)
    with pytest.raises(ValueError, match=r"'0-9' runs past.*Did you mean "
                       r'0-8\?'):
        parse_stitch_ids('0-9', valid)
    with pytest.raises(ValueError, match=r'start > end.*smaller id first'):
        parse_stitch_ids('8-6', valid)


def test_get_flops_keeps_an_earlier_table(tmp_path, capsys):
    out = str(tmp_path)
    argv = [CONFIG, '--no-latency', '--out-dir', out, '--stitch-ids']
    first = get_flops_cli.main(argv + ['0-1'])
    capsys.readouterr()
    second = get_flops_cli.main(argv + ['5'])
    printed = capsys.readouterr().out
    kept = sorted(n for n in os.listdir(out) if n.startswith('stitch_table_'))
    assert len(kept) == 2 and kept[0].endswith('.csv') and \
        kept[1].endswith('.json')
    assert f'kept the earlier table of {out} as' in printed
    with open(osp.join(out, kept[1])) as f:
        assert json.load(f) == json.loads(json.dumps(first))
    with open(osp.join(out, 'stitch_table.json')) as f:
        assert json.load(f) == json.loads(json.dumps(second))


# ------------------------------------------- the two building blocks alone
def _fake_run(work_dir, stamp, extra=()):
    """What a Runner leaves when it is built (and what a run may add)."""
    log_dir = osp.join(work_dir, stamp)
    os.makedirs(osp.join(log_dir, 'vis_data'))
    open(osp.join(log_dir, f'{stamp}.log'), 'w').close()
    open(osp.join(log_dir, 'vis_data', 'config.py'), 'w').close()
    open(osp.join(work_dir, 'cfg.py'), 'w').close()
    for name in extra:
        open(osp.join(work_dir, name), 'w').close()


@pytest.mark.parametrize('error, extra, cleaned', [
    (UserInputError('bad'), (), True),
    (UserInputError('bad'), ('iter_2.pth', 'last_checkpoint'), False),
    (RuntimeError('a bug'), (), False),
])
def test_no_empty_run_left(error, extra, cleaned, tmp_path):
    config = tmp_path / 'cfg.py'
    config.write_text('')
    cfg = Config(dict(work_dir=str(tmp_path / 'new' / 'w')),
                 filename=str(config))
    with pytest.raises(type(error)):
        with no_empty_run_left(cfg):
            _fake_run(cfg.work_dir, '20260101_000000', extra)
            raise error
    assert osp.exists(tmp_path / 'new') is not cleaned
    # An existing work dir: only what this run made goes.
    earlier = str(tmp_path / 'old')
    _fake_run(earlier, '20250101_000000')
    before = folder_digest(earlier)
    with pytest.raises(type(error)):
        with no_empty_run_left(Config(dict(work_dir=earlier))):
            _fake_run(earlier, '20260101_000000', extra)
            raise error
    after = folder_digest(earlier)
    assert all(after[path] == digest for path, digest in before.items())
    assert (set(after) == set(before)) is cleaned


def _registry_failure(build):
    with pytest.raises((KeyError, TypeError, ValueError)) as info:
        build()
    return info.value


@pytest.mark.parametrize('registry, cfg, expected', [
    ('TRANSFORMS', dict(type='ResizeEgde', scale=48),
     "Unknown type 'ResizeEgde' in the config: no transform"),
    ('HOOKS', dict(type='StitchSamplingHok'), "'StitchSamplingHook'"),
    ('METRICS', dict(type='Acuracy'), "Did you mean 'Accuracy'?"),
    ('DATASETS', dict(type='ImageNett'), "Did you mean 'ImageNet'"),
    ('HOOKS', dict(type='StitchSamplingHook', gapp=0.1),
     "StitchSamplingHook (the mmpretrain hook registry) takes no argument "
     "'gapp', set in the config. Did you mean 'gap'?"),
    ('MODELS', dict(type='ClsHead', tokp=(1, )), "Did you mean 'topk'?"),
])
def test_config_errors_of_every_registry(registry, cfg, expected):
    init_default_scope('mmpretrain')
    error = _registry_failure(
        lambda: getattr(mmpretrain.registry, registry).build(cfg))
    assert expected in str(config_error(error))


def test_other_errors_keep_their_traceback():
    init_default_scope('mmpretrain')
    # A TypeError raised inside a constructor, not about its arguments.
    inside = _registry_failure(lambda: mmpretrain.registry.MODELS.build(
        dict(type='SNNetv2', anchors=5)))
    assert isinstance(inside, TypeError) and config_error(inside) is None
    # The same kinds of error away from any config build.
    for error in (TypeError("f() got an unexpected keyword argument 'x'"),
                  KeyError('X is not in the mmpretrain::model registry.'),
                  ValueError('Unknown stitch id 4')):
        with pytest.raises(type(error)) as info:
            raise error
        assert config_error(info.value) is None


def test_amp_config_on_cpu(tmp_path, capsys):
    """A config that asks for AmpOptimWrapper is refused on CPU with the
    fix; switching the type with --cfg-options drops its AMP settings."""
    amp = ['optim_wrapper.type=AmpOptimWrapper',
           'optim_wrapper.loss_scale=dynamic']
    message = _run_main(train_cli.main, [
        CONFIG, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *amp
    ], capsys)
    assert 'AmpOptimWrapper' in message and 'needs an accelerator' in message
    assert '--cfg-options optim_wrapper.type=OptimWrapper' in message
    args = train_cli.parse_args([
        CONFIG, '--work-dir', str(tmp_path / 'w2'), '--cfg-options', *amp,
        'optim_wrapper.type=OptimWrapper'
    ])
    cfg = train_cli.build_train_config(args)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
