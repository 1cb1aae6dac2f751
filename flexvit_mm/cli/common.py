"""What ``tools/train.py`` and ``tools/test.py`` share."""
import difflib
import glob
import os
import os.path as osp

from mmengine.config import Config, DictAction

TOOLBOXES = ('mmseg', 'mmdet', 'mmpretrain')


class UserInputError(ValueError):
    """Bad command-line input; the message says how to fix it."""


def add_common_args(parser):
    """Arguments every tool takes."""
    parser.add_argument(
        '--work-dir', help='the folder for logs, checkpoints and results')
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


def apply_cfg_options(cfg, args):
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)


def launch_settings(cfg, args):
    cfg.launcher = args.launcher


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
