"""tools/deploy/export_stitch.py: one stitch as a standalone ChainedViT model.

One export per toolbox, each a different kind of route: an LSL stitch of the
classifier, an SL stitch of the segmentor with relative-position-bias (BEiT)
blocks, an LS stitch of the detector. The checkpoints are built here with
random stitching layers (non-zero LoRA B) and layer scales, so a missed LoRA
merge or a wrong block would show. Every export is loaded back from its
DIR/config.py with mmengine and compared with the stitched model
independently of the tool's own check.
"""
import ast
import contextlib
import importlib
import io
import json
import os
import os.path as osp

import pytest
import torch

from flexvit_mm.cli import run
from flexvit_mm.cli.export_stitch import main as export_main
from flexvit_mm.models.stitching.space import SMALL

from .conftest import (CONFIGS, REPO, data_root_options, latest_metrics,
                       load_checkpoint, run_tool)

TOOL = 'tools/deploy/export_stitch.py'
# kind -> config, stitch id, route kind, --cfg-options, and whether the tool
# runs as the real script in a subprocess or as its main in this process
# (the same code; saves the ~7 s of imports of a new process)
CASES = {
    # 8 classes: the generated ImageNet's, so that accuracies mean something.
    'cls': ('cls_snnetv2_tiny.py', 7, 'LSL', ['model.backbone.num_classes=8'],
            False),
    # BEiT blocks with relative position bias; outputs through a 'linear'
    # projection and through the cut's own S->L layer ('bridge').
    'seg': ('seg_snnetv2_ade20k_tiny.py', 3, 'SL', [], False),
    'det': ('det_snnetv2_tiny.py', 5, 'LS', [], True),
}
ONNX = ('cls', 'det')


def _options(pairs):
    return {k: int(v) if v.isdigit() else v
            for k, v in (p.split('=', 1) for p in pairs)}


def _build(config, options=(), checkpoint=None):
    """Model of a config under its toolbox's scope (+ weights), eval."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint as mm_load
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(_options(options))
    init_default_scope(cfg.default_scope)
    registry = importlib.import_module(f'{cfg.default_scope}.registry')
    model = registry.MODELS.build(cfg.model)
    if checkpoint is not None:
        mm_load(model, checkpoint, map_location='cpu', strict=True,
                logger='silent')
    return model.eval(), cfg


def _tensor_forward(model, inputs, toolbox):
    samples = None
    if toolbox == 'mmdet':
        from mmdet.structures import DetDataSample
        h, w = inputs.shape[-2:]
        samples = [DetDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
            batch_input_shape=(h, w), scale_factor=(1., 1.)))]
    with torch.no_grad():
        out = model(inputs, samples, mode='tensor')
    flat = []

    def walk(value):
        if isinstance(value, torch.Tensor):
            flat.append(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(out)
    return flat


def _relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _export(kind, root):
    """Make a checkpoint with random stitching layers (non-zero LoRA B),
    layer scales and bias tables, and export it with the tool.

    Returns:
        tuple: config, checkpoint, out dir, what the tool printed.
    """
    config, stitch_id, _, options, as_script = CASES[kind]
    config = osp.join(CONFIGS, config)
    checkpoint = str(root / 'stitched.pth')
    model, _ = _build(config, options)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if name.startswith('stitch_layers') or 'gamma' in name \
                    or 'relative_position_bias_table' in name:
                p.normal_(0, 0.2)
    state = model.state_dict()
    assert any(k.endswith('lora_B') and v.abs().sum() > 0
               for k, v in state.items())
    torch.save({'state_dict': state, 'meta': {}}, checkpoint)
    out = str(root / 'out')
    argv = [config, checkpoint, '--stitch-id', str(stitch_id), '--out',
            out] + (['--onnx'] if kind in ONNX else [])
    if options:
        argv += ['--cfg-options', *options]
    if as_script:
        log = run_tool(TOOL, *argv).stdout
    else:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            export_main(argv)
        log = printed.getvalue()
    return config, checkpoint, out, log


def _load_export(out):
    """The export as a user loads it: DIR/config.py and its load_from."""
    from mmengine.runner import load_checkpoint as mm_load
    exported, cfg = _build(osp.join(out, 'config.py'))
    mm_load(exported, cfg.load_from, map_location='cpu', strict=True,
            logger='silent')
    return exported, cfg


# One test per toolbox, so that `pytest -n 2` never exports twice.
@pytest.mark.parametrize('kind', sorted(CASES))
def test_export_computes_the_stitch_with_fewer_weights(kind, synthetic,
                                                       tmp_path):
    config, stitch_id, route_kind, options, _ = CASES[kind]
    config, checkpoint, out, log = _export(kind, tmp_path)
    with open(osp.join(out, 'export.json')) as f:
        report = json.load(f)
    weights = osp.join(out, f'stitch_{stitch_id}.pth')
    assert report['stitch_id'] == stitch_id
    assert report['kind'] == route_kind
    assert report['errors']['pytorch']['max'] <= 1e-5
    assert {osp.join(out, n) for n in ('config.py', 'export.json',
                                       f'stitch_{stitch_id}.pth')} <= set(
                                           report['files'])
    assert all(osp.isfile(p) for p in report['files'])
    sizes = report['sizes']
    assert sizes['params_after'] < sizes['params_before']
    assert sizes['file_bytes_after'] < sizes['file_bytes_before']
    assert 'params (state dict)' in log and 'file size' in log

    stitched, _ = _build(config, options, checkpoint)
    backbone = stitched.backbone
    backbone.set_stitch(stitch_id)
    route = backbone.space[stitch_id]
    assert route.kind == route_kind

    exported, cfg = _load_export(out)
    assert cfg.load_from == weights
    names = {type(m).__name__ for m in exported.modules()}
    assert type(exported.backbone).__name__ == 'ChainedViT'
    assert not names & {'SNNetv2', 'StitchingLayer'}
    assert len(exported.backbone.segments) == len(route.segments)

    state = load_checkpoint(weights)['state_dict']
    assert not [k for k in state if 'lora' in k]
    exported_backbone = sum(v.numel() for k, v in state.items()
                            if k.startswith('backbone.'))
    # What SNNetv2 counts as the stitch's parameters, less the LoRA factors
    # merged away: exactly the exported backbone.
    layers = set(route.layers)
    if backbone.dense:
        layers |= {(SMALL, block) for _, anchor, block in
                   backbone._feature_plan(route) if anchor == SMALL}
    lora = sum(backbone.stitch_layers[f][i].lora_A.numel() +
               backbone.stitch_layers[f][i].lora_B.numel()
               for f, i in layers)
    assert exported_backbone == backbone.stitch_params(stitch_id) - lora
    assert sizes['backbone_params_after'] == exported_backbone
    # Each block keeps its stochastic-depth rate from the anchor.
    for seg, part in zip(route.segments, exported.backbone.segments):
        for block, copy in zip(
                backbone.anchors[seg.anchor].blocks[seg.first:seg.last + 1],
                part.blocks):
            assert getattr(copy.drop_path1, 'drop_prob', 0.) == \
                pytest.approx(getattr(block.drop_path1, 'drop_prob', 0.))

    # The detector at a size of its own, not the tool's.
    shape = {'cls': (48, 48), 'seg': (64, 64), 'det': (96, 64)}[kind]
    torch.manual_seed(2)
    inputs = torch.randn(2, 3, *shape)
    got = _tensor_forward(exported, inputs, cfg.default_scope)
    want = _tensor_forward(stitched, inputs, cfg.default_scope)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert _relative_error(a, b) <= 1e-5

    if kind in ONNX:
        _check_onnx(kind, out, log, exported)
    if kind == 'cls':
        _check_test_tool(config, checkpoint, out, synthetic, tmp_path)


def _check_onnx(kind, out, log, exported):
    """The tool's onnxruntime check passed, and the graph gives the
    exported model's outputs on another input too."""
    import onnxruntime
    stitch_id = CASES[kind][1]
    with open(osp.join(out, 'export.json')) as f:
        report = json.load(f)
    assert report['errors']['onnx']['max'] <= 1e-4
    if kind == 'det':
        assert 'backbone + neck only' in log
        assert 'backbone + neck only' in report['onnx']['exported']
    session = onnxruntime.InferenceSession(
        osp.join(out, f'stitch_{stitch_id}.onnx'),
        providers=['CPUExecutionProvider'])
    torch.manual_seed(3)
    inputs = torch.randn(*report['onnx']['input_shape'])
    got = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    with torch.no_grad():
        want = exported.extract_feat(inputs) if kind == 'det' else \
            [exported(inputs, mode='tensor')]
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert _relative_error(torch.from_numpy(a), b) <= 1e-4


def _check_test_tool(config, checkpoint, out, synthetic, tmp_path):
    """tools/test.py on the export gives the accuracy of tools/test.py
    --stitch-id N on the stitched checkpoint."""
    _, stitch_id, _, options, _ = CASES['cls']
    data = data_root_options(synthetic('imagenet'))
    stitched_dir = str(tmp_path / 'stitched')
    run_tool('tools/test.py', config, checkpoint, '--work-dir', stitched_dir,
             '--stitch-id', str(stitch_id), '--no-flops', '--cfg-options',
             *data, *options)
    with open(osp.join(stitched_dir, 'stitches.json')) as f:
        row, = json.load(f)
    exported_dir = str(tmp_path / 'exported')
    run_tool('tools/test.py', osp.join(out, 'config.py'),
             osp.join(out, f'stitch_{stitch_id}.pth'), '--work-dir',
             exported_dir, '--cfg-options', *data)
    metrics = latest_metrics(exported_dir)
    # Not a trivial 0 or 100 (8 images, 8 classes, seeded weights).
    assert 0 < row['accuracy/top5'] < 100
    for key in ('accuracy/top1', 'accuracy/top5'):
        assert metrics[key] == pytest.approx(row[key], abs=1e-9)


def _bad_input(tmp_path, monkeypatch, case):
    """argv of a bad call and a fragment its message must hold."""
    from flexvit_mm.cli import export_stitch
    config = osp.join(CONFIGS, 'cls_snnetv2_tiny.py')
    checkpoint = str(tmp_path / 'stitched.pth')
    if case != 'missing checkpoint':
        model, _ = _build(config)
        torch.save({'state_dict': model.state_dict(), 'meta': {}},
                   checkpoint)
    out = str(tmp_path / 'out')
    argv = [config, checkpoint, '--stitch-id', '3', '--out', out]
    if case == 'unknown id':
        argv[3] = '4'  # the SL entry that runs no large block
        return argv, 'Unknown stitch id 4; valid ids are 0-3, 5-8'
    if case == 'out dir has files':
        os.makedirs(out)
        with open(osp.join(out, 'config.py'), 'w') as f:
            f.write('# mine\n')
        return argv, 'already holds files (config.py); nothing was changed'
    if case == 'missing checkpoint':
        return argv, 'does not exist'
    if case == 'not stitched':
        argv[0] = osp.join(CONFIGS, 'cls_imagenet.py')
        return argv, 'has no stitched backbone'
    assert case == 'onnx missing'
    real = importlib.util.find_spec
    monkeypatch.setattr(
        export_stitch.importlib.util, 'find_spec',
        lambda name, *a: None if name == 'onnxruntime' else real(name, *a))
    return argv + ['--onnx'], '--onnx needs onnxruntime'


@pytest.mark.parametrize('case', ['unknown id', 'out dir has files',
                                  'missing checkpoint', 'not stitched',
                                  'onnx missing'])
def test_bad_input_exits_2_with_a_message(case, tmp_path, monkeypatch,
                                          capsys):
    # The tool's main through flexvit_mm.cli.run, as the script calls it.
    argv, message = _bad_input(tmp_path, monkeypatch, case)
    out = argv[argv.index('--out') + 1]
    before = sorted(os.listdir(out)) if osp.isdir(out) else None
    with pytest.raises(SystemExit) as exit_info:
        run(export_main, argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    after = sorted(os.listdir(out)) if osp.isdir(out) else None
    assert after == before
    if case == 'out dir has files':
        with open(osp.join(out, 'config.py')) as f:
            assert f.read() == '# mine\n'


def test_chained_vit_needs_no_stitching_code():
    path = osp.join(REPO, 'flexvit_mm', 'models', 'backbones',
                    'chained_vit.py')
    with open(path) as f:
        tree = ast.parse(f.read())
    imported = [node.module or '' for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for a in node.names]
    assert not [m for m in imported if 'stitching' in m or 'snnetv2' in m]
