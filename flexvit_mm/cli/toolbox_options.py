"""The test options whose meaning differs between mmseg, mmdet and
mmpretrain, each applied the way that toolbox's own ``tools/test.py`` does.
"""
import os.path as osp
from copy import deepcopy

from mmengine.config import ConfigDict

from .common import UserInputError, check_output_dir, check_output_file


def _require_visualization_hook(cfg):
    if 'visualization' not in cfg.get('default_hooks', {}):
        raise UserInputError(
            '--show-dir needs a visualization hook: add '
            "default_hooks.visualization=dict(type='...VisualizationHook') "
            "(the toolbox's default_runtime base has one).")
    return cfg.default_hooks.visualization


def enable_show_dir(cfg, toolbox, show_dir):
    """Save painted predictions of every test image into ``show_dir``."""
    hook = _require_visualization_hook(cfg)
    # mmdet puts a relative show dir into the run's new log folder
    # (WORK_DIR/<timestamp>/), checked with --work-dir; the others use it as
    # given.
    if toolbox != 'mmdet' or osp.isabs(show_dir):
        check_output_dir(show_dir, '--show-dir')
    if toolbox == 'mmseg':
        hook.draw = True
        hook.interval = 1  # mmseg's default paints every 50th image only
        cfg.visualizer.save_dir = show_dir
    elif toolbox == 'mmdet':
        hook.draw = True
        hook.test_out_dir = show_dir
    else:
        hook.enable = True
        hook.interval = 1
        hook.out_dir = show_dir


def _flip_tta_pipeline(test_pipeline):
    pipeline = deepcopy(test_pipeline)
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=1.),
                     dict(type='RandomFlip', prob=0.)], [test_pipeline[-1]]])
    return pipeline


def _leaf_dataset(dataset_cfg):
    while 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def enable_tta(cfg, toolbox):
    """Wrap the model in the toolbox's TTA model and use its TTA pipeline.

    mmseg configs carry both in their default runtime; for mmdet and
    mmpretrain a horizontal-flip TTA is created when the config has none, as
    their own tools do.
    """
    if 'tta_model' not in cfg:
        if toolbox == 'mmseg':
            cfg.tta_model = dict(type='SegTTAModel')
        elif toolbox == 'mmdet':
            cfg.tta_model = dict(
                type='DetTTAModel',
                tta_cfg=dict(
                    nms=dict(type='nms', iou_threshold=0.5),
                    max_per_img=100))
        else:
            cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    dataset_cfg = _leaf_dataset(cfg.test_dataloader.dataset)
    if 'tta_pipeline' not in cfg:
        cfg.tta_pipeline = _flip_tta_pipeline(dataset_cfg.pipeline)
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset_cfg.pipeline = cfg.tta_pipeline


def configure_out(cfg, toolbox, out):
    """Settings ``--out`` needs before the Runner is built (mmseg)."""
    if toolbox == 'mmseg':
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True


def attach_out(runner, toolbox, out):
    """Metrics ``--out`` adds after the Runner is built (mmdet, mmpretrain).

    mmseg: a folder of prediction PNGs; mmdet: a ``.pkl`` of predictions;
    mmpretrain: a ``.pkl`` of predictions.
    """
    if toolbox == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=out))
    elif toolbox == 'mmpretrain':
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=out))


def check_out(toolbox, out):
    if toolbox in ('mmdet', 'mmpretrain') and not out.endswith(
            ('.pkl', '.pickle')):
        raise UserInputError(
            f'--out {out!r}: for {toolbox} configs the predictions are '
            'dumped to a pickle file; give a path ending in .pkl.')
    if toolbox == 'mmseg' and osp.splitext(out)[1] in ('.pkl', '.pickle'):
        raise UserInputError(
            f'--out {out!r}: for mmseg configs --out is a folder for the '
            'predicted label maps, not a .pkl file.')
    if toolbox == 'mmseg':
        check_output_dir(out, '--out')
    else:
        check_output_file(out, '--out')
