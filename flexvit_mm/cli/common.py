"""What ``tools/train.py`` and ``tools/test.py`` share."""
import argparse
import contextlib
import difflib
import glob
import os
import os.path as osp
import re
import shutil

from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process

from ..checkpoint import trust_checkpoints
from ..errors import FlexvitError
from .config_errors import config_error

TOOLBOXES = ('mmseg', 'mmdet', 'mmpretrain')


class UserInputError(FlexvitError, ValueError):
    """Bad command-line input; the message says how to fix it."""


class _TrustCheckpoints(argparse.Action):
    """``--trust-checkpoint``: sets the process-wide switch as it is parsed,
    so no tool can read a checkpoint before it takes effect."""

    def __call__(self, parser, namespace, values, option_string=None):
        trust_checkpoints()
        setattr(namespace, self.dest, True)


def add_trust_checkpoint_arg(parser, example=''):
    """``--trust-checkpoint``, for every tool that reads a checkpoint.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        example (str): Says which files typically need it. Defaults to ''.
    """
    parser.add_argument(
        '--trust-checkpoint',
        nargs=0,
        action=_TrustCheckpoints,
        default=False,
        help='load checkpoints with full pickle, which runs any code a file '
        'holds: only for files from a source you trust. Without it a '
        'checkpoint may hold only weights and training state, and any other '
        f'file is refused{example} (docs/checkpoints.md)')


def add_common_args(parser):
    """Arguments every tool takes."""
    parser.add_argument(
        '--work-dir', help='the folder for logs, checkpoints and results')
    add_trust_checkpoint_arg(parser)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. "train_cfg.max_iters=100"; '
        'a list is given as key="[a,b]" or key=a,b (no spaces). train.py '
        'applies it before --amp, --auto-scale-lr and --no-validate (which '
        'build on it); test.py applies it last.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher: pytorch for torchrun (tools/dist_*.sh), slurm '
        'for srun (tools/slurm_train.sh)')
    # torch.distributed.launch passes --local-rank (>= 2.0) or
    # --local_rank (older); torchrun passes LOCAL_RANK in the environment.
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)


def export_local_rank(args):
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)


def _nearby_configs(path):
    """Existing configs whose names look like ``path``."""
    root = osp.dirname(path) or '.'
    while root and not osp.isdir(root):
        root = osp.dirname(root)
    candidates = glob.glob(osp.join(root or '.', '**', '*.py'),
                           recursive=True)
    names = {osp.basename(c): c for c in candidates}
    close = difflib.get_close_matches(osp.basename(path), list(names), n=3)
    return [names[c] for c in close]


def load_config(path):
    """``Config.fromfile`` with a clear error for a config that isn't there.

    Args:
        path (str): The config file.

    Returns:
        mmengine.Config: The loaded config (``custom_imports`` applied).
    """
    if not osp.isfile(path):
        hint = _nearby_configs(path)
        message = f'Config file {path!r} does not exist.'
        if hint:
            message += ' Did you mean: ' + ', '.join(hint) + '?'
        else:
            message += (' Configs live under configs/, e.g. '
                        'configs/demo/*.py.')
        raise UserInputError(message)
    return Config.fromfile(path)


def toolbox_of(cfg):
    """The OpenMMLab toolbox a config belongs to, from its default_scope."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise UserInputError(
            f'The config has default_scope={scope!r}; flexvit-mm tools need '
            f'one of {TOOLBOXES}. Inherit a runtime base such as '
            "'mmseg::_base_/default_runtime.py' or set default_scope.")
    return scope


def resolve_work_dir(cfg, args, config_path):
    """CLI ``--work-dir`` > the config's ``work_dir`` (after
    ``--cfg-options``) > ``./work_dirs/<config name>``."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])
    check_output_dir(
        cfg.work_dir,
        '--work-dir' if args.work_dir is not None else "The config's work_dir")


def apply_cfg_options(cfg, args):
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)


#: What each launcher reads from the environment its starter sets up
#: (mmengine's ``init_dist``), and how to start a run with it.
LAUNCHER_ENV = {
    'pytorch': (('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
                'torchrun (tools/dist_train.sh CONFIG N, tools/dist_test.sh '
                'CONFIG CHECKPOINT N)'),
    'slurm': (('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
              'srun (tools/slurm_train.sh, tools/slurm_test.sh)'),
    'mpi': (('OMPI_COMM_WORLD_LOCAL_RANK', 'OMPI_COMM_WORLD_RANK',
             'OMPI_COMM_WORLD_SIZE', 'MASTER_ADDR'), 'mpirun'),
}


def check_launcher(launcher):
    """A ``--launcher`` whose starter did not start this process is refused
    before anything is built (mmengine would end in a KeyError)."""
    if launcher not in LAUNCHER_ENV:
        return
    names, starter = LAUNCHER_ENV[launcher]
    missing = [name for name in names if name not in os.environ]
    if missing:
        raise UserInputError(
            f'--launcher {launcher}: this process was not started by '
            f'{starter}; {", ".join(missing)} '
            f'{"is" if len(missing) == 1 else "are"} not set. Start the run '
            f'with {starter}, or drop --launcher to run one process.')


def launch_settings(cfg, args):
    check_launcher(args.launcher)
    cfg.launcher = args.launcher


def _nearest_existing(path):
    """``path`` or its nearest ancestor that exists (absolute)."""
    path = osp.abspath(path)
    while not osp.lexists(path):
        path = osp.dirname(path)
    return path


def _check_folder(folder, flag, path):
    existing = _nearest_existing(folder)
    if not osp.isdir(existing):
        raise UserInputError(
            f'{flag} {path}: cannot be created, {existing} is a file, not a '
            'folder. Give a path under a folder.')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserInputError(
            f'{flag} {path}: {existing} is not writable. Give a path you '
            'can write to.')


def check_output_dir(path, flag):
    """A folder a tool will write into: refused before any work is done if
    it is a file, sits under a file or cannot be written. Nothing is
    created here, so a run refused later leaves nothing behind.

    Args:
        path (str): The folder.
        flag (str): What set it, for the message (``'--work-dir'``).

    Raises:
        UserInputError: The folder cannot be used.
    """
    if osp.lexists(path) and not osp.isdir(path):
        raise UserInputError(
            f'{flag} {path}: this is a file; a folder is needed here. Give '
            'the path of a folder.')
    _check_folder(path, flag, path)


def check_output_file(path, flag):
    """A file a tool will write: refused before any work is done if it is a
    folder, or its folder could not be created or written (see
    :func:`check_output_dir`).

    Args:
        path (str): The file.
        flag (str): What set it, for the message (``'--out'``).

    Raises:
        UserInputError: The file cannot be written there.
    """
    if osp.isdir(path):
        raise UserInputError(
            f'{flag} {path}: this is a folder; a file is needed here. Give a '
            f'file path, e.g. {osp.join(path, "")}NAME.')
    _check_folder(osp.dirname(path) or '.', flag, path)


#: The name of a Runner's log folder, ``WORK_DIR/<timestamp>/``.
_TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')
#: All a Runner's log folder holds before the run has produced anything:
#: the log of its setup and the dumped config.
_SETUP_ONLY = {'vis_data', osp.join('vis_data', 'config.py')}


def _holds_setup_only(log_dir):
    found = set()
    for root, folders, files in os.walk(log_dir):
        for name in folders + files:
            found.add(osp.relpath(osp.join(root, name), log_dir))
    stamp = osp.basename(log_dir)
    return found <= _SETUP_ONLY | {f'{stamp}.log'}


@contextlib.contextmanager
def no_empty_run_left(cfg):
    """Leave no trace of a run that a user error stopped before it produced
    anything.

    Building the Runner creates ``WORK_DIR/<timestamp>/`` (the log of its
    setup, ``vis_data/config.py``) and dumps the config to
    ``WORK_DIR/<config name>.py``; a run refused after that (a bad
    ``--stitch-id``, a config the model cannot be built from) would leave
    these behind, and a new work dir holding only them. On such an error (a
    :class:`FlexvitError`, or a config error that :func:`config_error`
    recognises) the log folder of this run is removed if it holds nothing
    but that setup, the config dump too if this run made it, then the work
    dir and its parents if this run created them and they are empty. A run
    that produced something keeps everything: a checkpoint or
    ``last_checkpoint`` in the work dir, metrics, scalars, images. Nothing
    that existed before the run is removed, and other errors (bugs) keep
    everything for inspection.

    Args:
        cfg (mmengine.Config): The run's config, with its ``work_dir``.
    """
    work_dir = cfg.work_dir
    # The folders this run may create: the work dir and its missing parents.
    kept = _nearest_existing(work_dir)
    before = set(os.listdir(work_dir)) if kept == osp.abspath(work_dir) \
        else set()
    dump = osp.basename(cfg.filename) if cfg.filename else None
    try:
        yield
    except BaseException as error:
        if isinstance(error, FlexvitError) or config_error(error):
            _remove_empty_run(work_dir, kept, before, dump)
        raise


def _remove_empty_run(work_dir, kept, before, dump):
    if not (is_main_process() and osp.isdir(work_dir)):
        return
    new = set(os.listdir(work_dir)) - before
    if any(name.endswith('.pth') or name == 'last_checkpoint'
           for name in new):
        return
    runs = [name for name in new if _TIMESTAMP.match(name)
            and osp.isdir(osp.join(work_dir, name))]
    if not all(_holds_setup_only(osp.join(work_dir, name)) for name in runs):
        return
    for name in runs:
        shutil.rmtree(osp.join(work_dir, name), ignore_errors=True)
    if dump in new and osp.isfile(osp.join(work_dir, dump)):
        os.remove(osp.join(work_dir, dump))
    folder = osp.abspath(work_dir)
    while folder != kept and not os.listdir(folder):
        os.rmdir(folder)
        folder = osp.dirname(folder)


def finish_distributed(runner):
    """Leave the process group cleanly, before the interpreter shuts down.

    ``destroy_process_group`` only unregisters the group: the DDP wrapper
    still holds it, and gloo's worker threads run until the wrapper is
    freed. If that happens during interpreter shutdown, a worker thread can
    abort the finished process ("terminate called without an active
    exception"; 1 of 45 two-process ``dist_test.sh`` runs on a loaded
    2-core machine). So the runner keeps the bare model and the wrapper is
    collected first. The barrier keeps a rank from leaving while another
    still talks to it.

    Args:
        runner (Runner): the finished runner; its ``model`` is unwrapped.
    """
    import gc

    import torch.distributed as dist
    from mmengine.model import is_model_wrapper
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    if is_model_wrapper(runner.model):
        runner.model = runner.model.module
        gc.collect()
    dist.destroy_process_group()
