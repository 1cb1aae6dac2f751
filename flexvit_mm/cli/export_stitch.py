"""``tools/deploy/export_stitch.py``: one stitch of an SN-Netv2 model as a
standalone model (a ``ChainedViT`` backbone) with its own config.

    python tools/deploy/export_stitch.py CONFIG CKPT --stitch-id N --out DIR
        [--onnx] [--shape H W] [--force] [--cfg-options K=V ...]

Writes ``DIR/stitch_N.pth`` (only the weights the stitch uses; everything
outside the backbone copied unchanged), ``DIR/config.py`` (CONFIG with the
backbone replaced and ``load_from`` pointing at those weights) and
``DIR/export.json`` (the report), optionally ``DIR/stitch_N.onnx``. Before
writing, the exported model is built from the new config and checked against
the stitched one on a random input; the tool fails if they differ.
"""
import argparse
import copy
import importlib
import importlib.util
import io
import json
import os
import os.path as osp
import sys
import warnings
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import DictAction

from ..checkpoint import load_model_weights
from ..errors import FlexvitError
from .common import (UserInputError, add_trust_checkpoint_arg,
                     apply_cfg_options, check_output_dir, load_config,
                     toolbox_of)

#: max|a - b| / max|b| allowed between the stitched and the exported model.
TORCH_TOLERANCE = 1e-5
#: ... and between the exported PyTorch model and onnxruntime.
ONNX_TOLERANCE = 1e-4
#: The ONNX opset the dynamo exporter targets.
OPSET = 18
#: Config hooks and loops that need a stitched backbone.
STITCH_LOOPS = {'StitchSweepValLoop': 'ValLoop',
                'StitchSweepTestLoop': 'TestLoop'}
STITCH_OPTIM_CONSTRUCTORS = ('StitchedLayerDecayOptimWrapperConstructor', )
DEPLOY_PACKAGES = ('onnx', 'onnxruntime', 'onnxscript')
ONNX_WHAT = {
    'mmpretrain': 'backbone + head: the logits (model(x, mode="tensor"))',
    'mmseg': 'backbone + decode head: the decode head\'s output '
             '(segmentation logits, or a depth estimator\'s depth map) at its '
             'resolution (model(x, mode="tensor"))',
    'mmdet': 'backbone + neck only (model.extract_feat(x)): the RPN and RoI '
             'heads (proposal decoding, NMS, RoI Align) are left out because '
             'they do not trace into a plain graph; run them in PyTorch on '
             'the ONNX features',
}


class ExportCheckError(FlexvitError, RuntimeError):
    """The exported model does not compute what the stitch computes."""
    # A failed check, not bad input: the tool exits 1, as before.
    exit_code = 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export one stitch of an SN-Netv2 model as a standalone '
        'model (ChainedViT backbone) with its own config.')
    parser.add_argument('config', help='the config of the stitched model')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument(
        '--stitch-id', required=True,
        help='the stitch to export (one id; tools/test.py --stitch-id all '
        'lists them with their metrics and GFLOPs)')
    parser.add_argument(
        '--out', required=True,
        help='the folder to write to (new or empty, unless --force)')
    parser.add_argument(
        '--onnx', action='store_true',
        help='also export DIR/stitch_N.onnx (needs onnx, onnxruntime and '
        'onnxscript: pip install -e ".[deploy]") and check it with '
        'onnxruntime')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'),
        help='input size of the checks and the ONNX graph (default: the '
        'token grid of relative-position-bias anchors, else the '
        'segmentation data preprocessor\'s size, else the first anchor\'s '
        'img_size)')
    parser.add_argument(
        '--force', action='store_true',
        help='write into an --out folder that already holds files '
        '(files of the same names are replaced, others are kept)')
    parser.add_argument(
        '--cfg-options', nargs='+',
        action=DictAction,
        help='override config settings (applied before the model is built; '
        'kept in DIR/config.py)')
    add_trust_checkpoint_arg(parser)
    return parser.parse_args(argv)


# ----------------------------------------------------------------- input
def _check_inputs(args):
    if not osp.isfile(args.checkpoint):
        raise UserInputError(
            f'The checkpoint {args.checkpoint!r} does not exist. Give the '
            '.pth file of the stitched model (e.g. WORK_DIR/iter_*.pth '
            'written by tools/train.py).')
    check_output_dir(args.out, '--out')
    if osp.isdir(args.out) and os.listdir(args.out) and not args.force:
        raise UserInputError(
            f'--out {args.out!r} already holds files '
            f'({", ".join(sorted(os.listdir(args.out))[:5])}); nothing was '
            'changed. Give a new or empty folder, or pass --force to '
            'replace the files this tool writes.')
    if args.onnx:
        missing = [name for name in DEPLOY_PACKAGES
                   if importlib.util.find_spec(name) is None]
        if missing:
            raise UserInputError(
                f'--onnx needs {", ".join(missing)}, which '
                f'{"is" if len(missing) == 1 else "are"} not installed. '
                'Install the deploy extras (pip install -e ".[deploy]" -c '
                'requirements/constraints.txt), or drop --onnx.')


def _toolbox_models(toolbox):
    """The toolbox's model registry (its child of mmengine's root)."""
    return importlib.import_module(f'{toolbox}.registry').MODELS


def build_model(cfg, toolbox):
    """Build ``cfg.model`` with the toolbox's registry under its default
    scope (no weights are read)."""
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope'))
    return _toolbox_models(toolbox).build(copy.deepcopy(cfg.model))


def _backbone_name(model, backbone) -> str:
    for name, module in model.named_modules():
        if module is backbone:
            return name
    raise RuntimeError('The stitched backbone is not a submodule of the '
                       'model.')  # pragma: no cover


def _pick_stitch(backbone, spec) -> int:
    from ..models.stitching.selection import parse_stitch_ids
    try:
        ids = parse_stitch_ids(spec, backbone.stitch_ids)
    except ValueError as error:
        raise UserInputError(f'--stitch-id {spec}: {error}') from error
    if len(ids) != 1:
        raise UserInputError(
            f'--stitch-id {spec} selects {len(ids)} stitches; export one at '
            'a time (run the tool once per id, each with its own --out).')
    backbone.set_stitch(ids[0])
    return ids[0]


def default_shape(cfg, backbone, route) -> Tuple[int, int]:
    """Input size of the checks: the token grid of relative-position-bias
    anchors (they only take that), else the segmentation preprocessor's
    ``size``, else the route's first anchor's ``img_size``."""
    from ..models.backbones.anchors import has_rel_pos_bias
    for seg in route.segments:
        anchor = backbone.anchors[seg.anchor]
        if has_rel_pos_bias(anchor):
            grid, patch = anchor.patch_embed.grid_size, \
                anchor.patch_embed.patch_size
            return (grid[0] * patch[0], grid[1] * patch[1])
    size = (cfg.model.get('data_preprocessor') or {}).get('size')
    if size is not None and cfg.get('default_scope') == 'mmseg':
        return tuple(int(s) for s in size)
    return tuple(
        int(s) for s in backbone.anchors[route.first_anchor].patch_embed
        .img_size)


# --------------------------------------------------------------- config
def _set_path(cfg_model, dotted, value):
    node = cfg_model
    parts = dotted.split('.')
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def exported_config(cfg, backbone_path: str, backbone_cfg: dict,
                    weights: str) -> Tuple[object, List[str]]:
    """CONFIG with the stitched backbone replaced by the export, its
    stitching-only settings replaced, and ``load_from`` set.

    Returns:
        tuple[mmengine.Config, list[str]]: the new config and its
        changes (for the report).
    """
    from mmengine.config import ConfigDict
    new = copy.deepcopy(cfg)
    _set_path(new.model, backbone_path, ConfigDict(backbone_cfg))
    changes = [f'model.{backbone_path}: SNNetv2 -> ChainedViT']
    hooks = new.get('custom_hooks') or []
    kept = [h for h in hooks if 'Stitch' not in str(h.get('type', ''))]
    if len(kept) != len(hooks):
        removed = [str(h.get('type')) for h in hooks if h not in kept]
        changes.append('custom_hooks: removed ' + ', '.join(removed) +
                       ' (they need a stitched backbone)')
        new.custom_hooks = kept
    for key in ('val_cfg', 'test_cfg'):
        loop = new.get(key)
        if isinstance(loop, dict) and loop.get('type') in STITCH_LOOPS:
            plain = dict(type=STITCH_LOOPS[loop['type']])
            if 'fp16' in loop:
                plain['fp16'] = loop['fp16']
            new[key] = plain
            changes.append(f'{key}: {loop["type"]} -> {plain["type"]}')
    optim = new.get('optim_wrapper')
    if isinstance(optim, dict) and optim.get(
            'constructor') in STITCH_OPTIM_CONSTRUCTORS:
        changes.append(
            f'optim_wrapper: removed constructor={optim["constructor"]!r} '
            'and its paramwise_cfg.decay_rate (layer decay over a stitched '
            'pair); fine-tuning the export uses the default constructor')
        optim.pop('constructor')
        paramwise = optim.get('paramwise_cfg')
        if isinstance(paramwise, dict):
            paramwise.pop('decay_rate', None)
            if not paramwise:
                optim.pop('paramwise_cfg')
    new.load_from = weights
    new.resume = False
    changes.append(f'load_from: {weights}')
    return new, changes


# ---------------------------------------------------------------- checks
def _flatten(value) -> List:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for k in sorted(value) for t in _flatten(value[k])]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flatten(v)]
    return []


def relative_errors(outputs, references) -> List[float]:
    """max|a - b| / max|b| for each pair of tensors (0 when both are 0)."""
    outputs, references = _flatten(outputs), _flatten(references)
    if len(outputs) != len(references):
        raise ExportCheckError(
            f'The exported model gives {len(outputs)} output tensors, the '
            f'stitched one {len(references)}.')
    errors = []
    for a, b in zip(outputs, references):
        a = torch.as_tensor(a, dtype=torch.float64)
        b = torch.as_tensor(b, dtype=torch.float64)
        if a.shape != b.shape:
            raise ExportCheckError(
                f'Output shapes differ: exported {tuple(a.shape)}, stitched '
                f'{tuple(b.shape)}.')
        scale = b.abs().max().item() if b.numel() else 0.
        diff = (a - b).abs().max().item() if b.numel() else 0.
        errors.append(diff / scale if scale > 0 else diff)
    return errors


def _det_samples(shape):
    from mmdet.structures import DetDataSample
    h, w = shape
    return [DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
        batch_input_shape=(h, w), scale_factor=(1., 1.)))]


def tensor_outputs(model, inputs, toolbox):
    """``model(inputs, mode='tensor')`` (a detector gets data samples with
    the input's size, which its RPN needs)."""
    samples = _det_samples(inputs.shape[-2:]) if toolbox == 'mmdet' else None
    with torch.no_grad():
        return model(inputs, samples, mode='tensor')


class OnnxWrapper(torch.nn.Module):
    """What is exported to ONNX for each toolbox (see ``ONNX_WHAT``)."""

    def __init__(self, model, toolbox):
        super().__init__()
        self.model = model
        self.toolbox = toolbox

    def forward(self, inputs):
        if self.toolbox == 'mmdet':
            return tuple(self.model.extract_feat(inputs))
        return self.model(inputs, mode='tensor')


def export_onnx(model, toolbox, inputs, path) -> List[float]:
    """Export ``model`` to ONNX at ``path``, run it with onnxruntime and
    compare with PyTorch.

    Returns:
        list[float]: the relative error of each output.
    """
    import onnxruntime
    wrapper = OnnxWrapper(model, toolbox).eval()
    with torch.no_grad():
        reference = wrapper(inputs)
        # The default (dynamo, torch.export-based) exporter at opset 18;
        # inputs have a fixed shape (the relative position bias tables and
        # the detector's pyramid are made for one size anyway). One file,
        # unless the weights pass protobuf's 2 GB limit: then they go to
        # PATH.data next to it.
        weight_bytes = sum(t.numel() * t.element_size()
                           for t in wrapper.state_dict().values())
        count = len(_flatten(reference))
        if toolbox == 'mmdet':
            output_names = [f'neck_{i}' for i in range(count)]
        elif toolbox == 'mmpretrain':
            output_names = ['logits']
        else:
            output_names = ['depth' if 'Depth' in type(model).__name__ else
                            'seg_logits']
        with warnings.catch_warnings():
            # torch.export's own deprecation notices, not about the model.
            warnings.simplefilter('ignore', FutureWarning)
            warnings.simplefilter('ignore', DeprecationWarning)
            torch.onnx.export(wrapper, (inputs, ), path, dynamo=True,
                              opset_version=OPSET, input_names=['inputs'],
                              output_names=output_names,
                              external_data=weight_bytes > 1.8 * 2**30,
                              verbose=False)
    session = onnxruntime.InferenceSession(
        path, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    outputs = session.run(None, {name: inputs.numpy()})
    return relative_errors([torch.from_numpy(o) for o in outputs],
                           reference)


# --------------------------------------------------------------- report
def _numel(state: Dict) -> int:
    return sum(v.numel() for v in state.values() if hasattr(v, 'numel'))


def _bytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def _mb(value: Optional[int]) -> str:
    return '-' if value is None else f'{value / 2**20:.3f} MB'


def format_table(sizes: Dict) -> str:
    rows = [('', 'stitched', 'exported'),
            ('params (state dict)', f'{sizes["params_before"]:,}',
             f'{sizes["params_after"]:,}'),
            ('  of the backbone', f'{sizes["backbone_params_before"]:,}',
             f'{sizes["backbone_params_after"]:,}'),
            ('state dict size', _mb(sizes['state_dict_bytes_before']),
             _mb(sizes['state_dict_bytes_after'])),
            ('file size', _mb(sizes['file_bytes_before']),
             _mb(sizes['file_bytes_after']))]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for index, row in enumerate(rows):
        lines.append('  '.join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(row)))
        if index == 0:
            lines.append('  '.join('-' * w for w in widths))
    return '\n'.join(lines)


# ----------------------------------------------------------------- main
def export(args) -> dict:
    """Do the export; returns the report (also written to export.json)."""
    from mmengine.config import Config

    from ..models.stitching.export import export_stitch, lora_keys
    from ..models.stitching.selection import find_stitched_backbone
    _check_inputs(args)
    cfg = load_config(args.config)
    toolbox = toolbox_of(cfg)
    apply_cfg_options(cfg, args)

    model = build_model(cfg, toolbox)
    try:
        backbone = find_stitched_backbone(model)
    except TypeError as error:
        raise UserInputError(
            f'{args.config}: {error} Export works on SN-Netv2 configs '
            '(model.backbone.type=\'SNNetv2\').') from error
    stitch_id = _pick_stitch(backbone, args.stitch_id)
    # Strict: a checkpoint that does not fit is refused, naming the keys.
    checkpoint = load_model_weights(model, args.checkpoint)
    model.eval()
    route = backbone.space[stitch_id]
    backbone_path = _backbone_name(model, backbone)
    print(f'Exporting stitch {stitch_id} ({route.kind}: {route.name}) of '
          f'{args.config}')

    backbone_cfg, backbone_state = export_stitch(backbone, stitch_id)
    full_before = model.state_dict()
    prefix = backbone_path + '.'
    state = {k: v for k, v in full_before.items()
             if not k.startswith(prefix)}
    state.update({prefix + k: v for k, v in backbone_state.items()})

    out_dir = osp.abspath(args.out)
    weights = osp.join(out_dir, f'stitch_{stitch_id}.pth')
    new_cfg, changes = exported_config(cfg, backbone_path, backbone_cfg,
                                       weights)

    # The export as a user gets it: built from the written config.
    exported = build_model(new_cfg, toolbox)
    exported.load_state_dict(state, strict=True)
    exported.eval()
    leftovers = sorted({type(m).__name__ for m in exported.modules()
                        if type(m).__name__ in ('SNNetv2', 'StitchingLayer')})
    if leftovers or lora_keys(state):
        raise ExportCheckError(
            f'The exported model still holds {leftovers or lora_keys(state)}.'
        )  # pragma: no cover - export_stitch builds none of these

    shape = tuple(args.shape) if args.shape else default_shape(
        cfg, backbone, route)
    patch = tuple(backbone.anchors[route.first_anchor].patch_embed
                  .patch_size)
    if any(size <= 0 or size % step for size, step in zip(shape, patch)):
        raise UserInputError(
            f'--shape {shape[0]} {shape[1]}: give a size divisible by the '
            f'patch size {patch[0]}x{patch[1]}.')
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(1, 3, *shape, generator=generator)
    try:
        reference = tensor_outputs(model, inputs, toolbox)
        outputs = tensor_outputs(exported, inputs, toolbox)
    except ValueError as error:
        raise UserInputError(f'--shape {shape[0]} {shape[1]}: {error}')
    errors = relative_errors(outputs, reference)
    worst = max(errors)
    print(f'PyTorch check at {shape[0]}x{shape[1]}: {len(errors)} output '
          f'tensors of model(x, mode="tensor"), max relative error '
          f'{worst:.3g} (tolerance {TORCH_TOLERANCE:g})')
    if not worst <= TORCH_TOLERANCE:
        raise ExportCheckError(
            f'The exported model differs from stitch {stitch_id}: max '
            f'relative error {worst:.3g} > {TORCH_TOLERANCE:g} (per output: '
            f'{[float(f"{e:.3g}") for e in errors]}). Nothing was written.')

    os.makedirs(out_dir, exist_ok=True)
    meta = {}
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('meta'),
                                                   dict):
        if 'dataset_meta' in checkpoint['meta']:
            meta['dataset_meta'] = checkpoint['meta']['dataset_meta']
    meta['export'] = dict(stitch_id=stitch_id, route=route.name,
                          kind=route.kind, source_config=args.config,
                          source_checkpoint=osp.abspath(args.checkpoint))
    torch.save({'state_dict': state, 'meta': meta}, weights)
    config_path = osp.join(out_dir, 'config.py')
    new_cfg.dump(config_path)
    # What is on disk loads back into what was checked.
    Config.fromfile(config_path)

    files = [config_path, weights]
    report = dict(
        stitch_id=stitch_id, route=route.name, kind=route.kind,
        toolbox=toolbox, config=args.config,
        checkpoint=osp.abspath(args.checkpoint), input_shape=list(shape),
        errors=dict(pytorch=dict(max=worst, per_output=errors,
                                 tolerance=TORCH_TOLERANCE)),
        config_changes=changes)

    onnx_failure = None
    if args.onnx:
        onnx_path = osp.join(out_dir, f'stitch_{stitch_id}.onnx')
        print(f'ONNX ({toolbox}): {ONNX_WHAT[toolbox]}')
        report['onnx'] = dict(file=onnx_path, exported=ONNX_WHAT[toolbox],
                              exporter='dynamo', opset=OPSET,
                              input_shape=[1, 3, *shape])
        try:
            onnx_errors = export_onnx(exported, toolbox, inputs, onnx_path)
        except Exception as error:  # the exporter's errors have no base
            onnx_failure = (f'the ONNX export failed: '
                            f'{type(error).__name__}: {error}')
            report['onnx']['error'] = onnx_failure
        else:
            files.append(onnx_path)
            if osp.isfile(onnx_path + '.data'):
                files.append(onnx_path + '.data')
            onnx_worst = max(onnx_errors)
            report['errors']['onnx'] = dict(max=onnx_worst,
                                            per_output=onnx_errors,
                                            tolerance=ONNX_TOLERANCE)
            print(f'onnxruntime check: {len(onnx_errors)} output tensors, '
                  f'max relative error {onnx_worst:.3g} (tolerance '
                  f'{ONNX_TOLERANCE:g})')
            if not onnx_worst <= ONNX_TOLERANCE:
                onnx_failure = (
                    f'onnxruntime differs from PyTorch: max relative error '
                    f'{onnx_worst:.3g} > {ONNX_TOLERANCE:g}')

    backbone_before = {k: v for k, v in full_before.items()
                       if k.startswith(prefix)}
    sizes = dict(
        params_before=_numel(full_before), params_after=_numel(state),
        backbone_params_before=_numel(backbone_before),
        backbone_params_after=_numel(backbone_state),
        state_dict_bytes_before=_bytes({'state_dict': full_before}),
        state_dict_bytes_after=_bytes({'state_dict': state}),
        file_bytes_before=osp.getsize(args.checkpoint),
        file_bytes_after=osp.getsize(weights))
    if args.onnx and onnx_failure is None:
        sizes['onnx_file_bytes'] = osp.getsize(onnx_path)
    report['sizes'] = sizes
    report_path = osp.join(out_dir, 'export.json')
    files.append(report_path)
    report['files'] = files
    with open(report_path, 'w') as f:
        json.dump(report, f, indent=2)
    print(format_table(sizes))
    if 'onnx_file_bytes' in sizes:
        print(f'ONNX file: {_mb(sizes["onnx_file_bytes"])}')
    print('Config changes: ' + '; '.join(changes))
    print('Wrote ' + ', '.join(files))
    if onnx_failure is not None:
        raise ExportCheckError(
            f'--onnx: {onnx_failure}. The PyTorch export in {out_dir} is '
            f'complete and checked; see {report_path}.')
    return report


def main(argv=None):
    """Entry point of ``tools/deploy/export_stitch.py``; returns the
    report. A failed check ends with its message and exit status 1."""
    args = parse_args(argv)
    try:
        return export(args)
    except ExportCheckError as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(1)
