"""Every shipped stitched config trains: two iterations through the real
``tools/train.py`` on generated data, with its real model (full-size DeiT3
anchors, random weights), heads, losses, optimizer (constructor, paramwise
settings), schedulers, training pipeline, stitching-init and stitch-sampling
hooks. Building alone (tests/test_full_size_configs.py) missed a v1 config
whose sampler refused its own ``gap``.

Only the size of the run is shrunk, with ``--cfg-options`` (the
``_options`` below) and ``--no-validate``:

- data roots at the generated datasets, batch 1 (2 for UPerNet, whose
  pooled 1x1 map is batch-normalised), no worker processes;
- two iterations (``max_iters=2``; epoch-based configs one epoch of two
  images via the dataset's ``indices``), no checkpoint (gigabytes for a
  DeiT3-L pair with its optimizer state), a log line every iteration;
- no anchor weight files (``init_cfg=None``: random initialisation);
  ``StitchingInitHook(num_images=1)``;
- on CPU, mixed precision is unavailable (mmengine's ``AmpOptimWrapper``
  asserts a GPU): the config's optimizer runs in an ``OptimWrapper``, all
  its other settings kept;
- dense tasks train on smaller inputs that their models take: segmentation
  128x128 crops (anchors with a relative position bias are built for that
  token grid), depth 128x160 crops, detection 128x128 LSJ. At 512-1024
  pixels one DeiT3-L step takes minutes on a CPU core.

The FLOPs table the sampler groups (``WORK_DIR/stitch_flops_HxW.json``)
is counted by tracing one forward of each of the 134 stitches at the input
size, ~110 s for S-L at 224 on one core. That counting is tested against
the official table in tests/test_snnetv2_full_size.py; here the work dir
gets the table beforehand, in the format and under the key of the cache
that a restarted run reads, with each stitch's FLOPs from the block formula
``12 N d^2 + 2 N^2 d`` (N tokens, width d). The demo config, tiny, counts
its own.
"""
import glob
import json
import math
import os.path as osp

import pytest
import torch
from mmengine import Config
from mmengine.registry import MODELS, init_default_scope

from flexvit_mm.analysis.stitch_table import stitch_table_key
from flexvit_mm.datasets.layout import KNOWN_LAYOUTS
from flexvit_mm.models.stitching.selection import find_stitched_backbone

from .conftest import REPO, data_root_options, run_tool

CONFIGS = sorted({
    osp.relpath(path, REPO)
    for pattern in ('configs/*/snnetv*.py', 'configs/demo/*.py')
    for path in glob.glob(osp.join(REPO, pattern))})
# The smaller input of each dense task (see the module docstring).
SMALL_INPUT = {'seg': (128, 128), 'depth': (128, 160), 'det': (128, 128)}


def _format(value):
    """A value as ``--cfg-options`` (mmengine's DictAction) reads it."""
    if isinstance(value, (tuple, list)):
        inner = ','.join(_format(v) for v in value)
        return f'({inner})' if isinstance(value, tuple) else f'[{inner}]'
    return str(value)


def _flatten(prefix, value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(f'{prefix}.{key}', item)
    else:
        yield prefix, value


def _hook_index(cfg, hook_type):
    types = [hook['type'] for hook in cfg.custom_hooks]
    return types.index(hook_type)


def _input_shape(cfg):
    hook = cfg.custom_hooks[_hook_index(cfg, 'StitchSamplingHook')]
    shape = hook.get('input_shape')
    return tuple(shape) if shape else None


def _replace_size(prefix, node, old, new):
    """Overrides that put ``new`` wherever ``node`` holds the input size
    ``old`` (a pipeline's crop, pad and resize sizes, a preprocessor's
    fixed size)."""
    if isinstance(node, (list, tuple)) and tuple(node) == tuple(old):
        return {prefix: new}
    if isinstance(node, dict):
        children = node.items()
    elif isinstance(node, (list, tuple)):
        children = enumerate(node)
    else:
        return {}
    overrides = {}
    for key, child in children:
        overrides.update(_replace_size(f'{prefix}.{key}', child, old, new))
    return overrides


def _options(cfg, config):
    """The overrides of one config, as a ``{key: value}`` dict."""
    # Batch norm over UPerNet's 1x1 pooled map needs two samples.
    head = cfg.model.get('decode_head') or {}
    options = {
        'train_dataloader.batch_size':
        2 if 1 in head.get('pool_scales', ()) else 1,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'default_hooks.checkpoint': None,
        'default_hooks.logger.interval': 1,
        'randomness.seed': 0,  # the same stitches every run
        f'custom_hooks.{_hook_index(cfg, "StitchingInitHook")}.num_images':
        1,
    }
    for index, anchor in enumerate(cfg.model.backbone.anchors):
        if anchor.get('init_cfg'):
            options[f'model.backbone.anchors.{index}.init_cfg'] = None
    loop = cfg.train_cfg
    if loop.get('by_epoch') or loop.get('type') == 'EpochBasedTrainLoop':
        options['train_cfg.max_epochs'] = 1
        options['train_dataloader.dataset.indices'] = 2
    else:
        options['train_cfg.max_iters'] = 2
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        options['optim_wrapper._delete_'] = True
        options['optim_wrapper.type'] = 'OptimWrapper'
        for key, value in cfg.optim_wrapper.items():
            if key not in ('type', 'loss_scale', 'dtype'):
                options.update(_flatten(f'optim_wrapper.{key}', value))
    task = config.split(osp.sep)[1]
    if task in SMALL_INPUT:
        old, new = _input_shape(cfg), SMALL_INPUT[task]
        options.update(_replace_size('train_dataloader.dataset.pipeline',
                                     cfg.train_dataloader.dataset.pipeline,
                                     old, new))
        options.update(_replace_size('model.data_preprocessor',
                                     cfg.model.data_preprocessor, old, new))
        index = _hook_index(cfg, 'StitchSamplingHook')
        options[f'custom_hooks.{index}.input_shape'] = new
        for i, anchor in enumerate(cfg.model.backbone.anchors):
            if anchor.get('rel_pos_bias'):  # built for one token grid
                assert new[0] == new[1]
                options[f'model.backbone.anchors.{i}.img_size'] = new[0]
    return options


def _estimated_table(backbone, shape):
    """Per-stitch FLOPs from the ViT block formula (see the docstring)."""
    patch = backbone.anchors[0].patch_embed.patch_size
    tokens = (shape[0] // patch[0]) * (shape[1] // patch[1]) + 1
    widths = [anchor.embed_dim for anchor in backbone.anchors]

    def block(width):
        return 12 * tokens * width**2 + 2 * tokens**2 * width

    table = {}
    for stitch_id in backbone.stitch_ids:
        route = backbone.space[stitch_id]
        flops = sum((segment.last - segment.first + 1) *
                    block(widths[segment.anchor])
                    for segment in route.segments)
        flops += len(route.layers) * tokens * widths[0] * widths[1]
        table[stitch_id] = dict(flops=flops, params=0)
    return table


def _write_flops_table(cfg, work_dir):
    """Write the sampler's FLOPs table cache for a full-size config; a
    tiny one counts its own. The model is built on the meta device: no
    memory, no time."""
    init_default_scope(cfg.default_scope)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    backbone = find_stitched_backbone(model)
    if max(anchor.embed_dim for anchor in backbone.anchors) < 384:
        return None
    shape = _input_shape(cfg) or tuple(
        backbone.anchors[0].patch_embed.img_size)
    backbone.check_input_shape(shape)  # what counting would check first
    path = osp.join(work_dir, f'stitch_flops_{shape[0]}x{shape[1]}.json')
    with open(path, 'w') as f:
        json.dump(
            dict(key=stitch_table_key(backbone, shape),
                 table=_estimated_table(backbone, shape)), f)
    return path


def _read(path):
    with open(path) as f:
        return f.read()


def test_every_stitched_config_is_covered():
    tasks = {config.split(osp.sep)[1] for config in CONFIGS}
    assert tasks == {'cls', 'seg', 'depth', 'det', 'demo'}, CONFIGS
    assert 'configs/cls/snnetv1_deit3-s-l_in1k.py' in CONFIGS
    assert len(CONFIGS) >= 12, CONFIGS


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS)
def test_shipped_config_trains(config, synthetic, tmp_path):
    cfg = Config.fromfile(osp.join(REPO, config))
    dataset_type = cfg.train_dataloader.dataset.type.split('.')[-1]
    kind = KNOWN_LAYOUTS[dataset_type].synthetic_kind
    options = _options(cfg, config)
    root = synthetic(kind)
    cfg.merge_from_dict(options)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    table = _write_flops_table(cfg, str(work_dir))
    written = _read(table) if table else None
    proc = run_tool(
        'tools/train.py', config, '--work-dir', str(work_dir),
        '--no-validate', '--cfg-options', *data_root_options(root, kind),
        *(f'{key}={_format(value)}' for key, value in options.items()))
    log = proc.stdout + proc.stderr
    assert 'StitchingInitHook: fitted' in log
    sampler = [line for line in log.splitlines()
               if 'StitchSamplingHook: FlopsGroupedSampler' in line]
    assert sampler, log[-3000:]
    if table:  # read, not counted again (which would rewrite it)
        assert _read(table) == written
        assert f': {len(json.loads(written)["table"])} stitches in' in \
            sampler[0]
    if 'snnetv1' in config:  # uniform: every stitch in one group
        assert '13 stitches in 1 FLOPs groups' in sampler[0]
    scalars = glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                                 'scalars.json'))
    steps = [json.loads(line) for line in _read(scalars[0]).splitlines()]
    assert [step['iter'] for step in steps] == [1, 2]
    assert all(math.isfinite(step['loss']) for step in steps)
