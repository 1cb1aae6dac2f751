"""``tools/analysis/get_flops.py``: GFLOPs, parameters and latency of every
stitch of a config's stitched backbone (or of its backbone, when it is not
stitched).

The stitched table is :func:`flexvit_mm.analysis.stitch_table.
compute_stitch_table`, the function the training sampler, the validation
loop and ``tools/test.py`` use, at the same default input size
(:func:`flexvit_mm.engine.hooks.task_input_shape`), so the numbers agree
everywhere.
"""
import argparse
import csv
import json
import os
import os.path as osp
from types import SimpleNamespace

from ..engine.stitch_sweep import keep_previous_report
from .common import (UserInputError, apply_cfg_options, check_output_dir,
                     load_config, toolbox_of)

#: Input size for a model without a stitched backbone (the benchmark's).
PLAIN_SHAPE = (224, 224)
#: What the tool writes into the output folder; the JSON comes first, as
#: :func:`keep_previous_report` wants.
TABLE_FILES = ('stitch_table.json', 'stitch_table.csv')


def parse_args(argv=None):
    from mmengine.config import DictAction

    from ..analysis.stitch_table import LATENCY_REPEATS, LATENCY_WARMUP
    parser = argparse.ArgumentParser(
        description='GFLOPs, parameters and latency of every stitch of a '
        'config\'s stitched backbone (or of its backbone).')
    parser.add_argument('config', help='the config file')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'),
        help='input size; default the one tools/test.py --flops-shape and '
        'the training sampler use (the StitchSamplingHook\'s input_shape, '
        'else the first anchor\'s img_size); 224 224 for a backbone that is '
        'not stitched')
    parser.add_argument(
        '--latency', action=argparse.BooleanOptionalAction, default=True,
        help='measure the latency (median ms per batch) of every stitch; '
        '--no-latency counts FLOPs and parameters only')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images per timed forward (default 1)')
    parser.add_argument('--device', default='cpu',
                        help='cpu or cuda[:N] (default cpu)')
    parser.add_argument(
        '--threads', type=int,
        help='torch threads while timing; default 1 on CPU (the benchmark '
        'protocol), unchanged on GPU')
    parser.add_argument(
        '--warmup', type=int, default=LATENCY_WARMUP,
        help='untimed rounds, each running every stitch once (default '
        f'{LATENCY_WARMUP})')
    parser.add_argument(
        '--repeats', type=int, default=LATENCY_REPEATS,
        help='timed rounds, stitches round-robin; the median is reported '
        f'(default {LATENCY_REPEATS})')
    parser.add_argument(
        '--stitch-ids', default=None,
        help='the stitches: "all" (default), an id, a list "3,12,80" or '
        'ranges "2-12"')
    parser.add_argument(
        '--out-dir', '--work-dir', dest='out_dir',
        help='where stitch_table.json and stitch_table.csv go; default the '
        'config\'s work_dir, else work_dirs/<config name> (tools/test.py\'s '
        'default work dir)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. '
        'model.backbone.anchors.0.img_size=224')
    return parser.parse_args(argv)


def build_model(cfg):
    """The config's model (custom_imports and default_scope honoured),
    eval mode; no weights are loaded (none are needed)."""
    from mmengine.registry import MODELS, init_default_scope
    if 'model' not in cfg:
        raise UserInputError('The config has no "model" to analyse.')
    init_default_scope(toolbox_of(cfg))
    return MODELS.build(cfg.model).eval()


def default_shape(cfg, backbone):
    """:func:`flexvit_mm.engine.hooks.task_input_shape` of the runner this
    config would build: its StitchSamplingHook's ``input_shape``, else the
    first anchor's ``img_size``."""
    from mmengine.registry import HOOKS

    from ..engine.hooks import StitchSamplingHook, task_input_shape
    hooks = []
    for hook_cfg in cfg.get('custom_hooks', None) or []:
        kind = hook_cfg.get('type')
        if isinstance(kind, str):
            kind = HOOKS.get(kind) or HOOKS.get(kind.rsplit('.', 1)[-1])
        if isinstance(kind, type) and issubclass(kind, StitchSamplingHook):
            args = {k: v for k, v in hook_cfg.items() if k != 'type'}
            hooks.append(kind(**args))
    return tuple(task_input_shape(SimpleNamespace(hooks=hooks), backbone))


def _plain_backbone(model):
    """What is timed and counted for a model without a stitched backbone:
    its backbone, else the whole model (``mode='tensor'``)."""
    from mmengine.model import BaseModel

    from ..analysis.benchmark import _TensorMode
    backbone = getattr(model, 'backbone', None)
    if backbone is not None:
        return backbone
    return _TensorMode(model) if isinstance(model, BaseModel) else model


def stitched_rows(backbone, shape, args):
    """Rows of the stitched table and its JSON document."""
    from ..analysis.stitch_table import (compute_stitch_table,
                                         latency_protocol, stitch_table_key)
    from ..models.stitching.selection import parse_stitch_ids
    try:
        ids = parse_stitch_ids(args.stitch_ids or 'all', backbone.stitch_ids)
    except ValueError as error:
        raise UserInputError(f'--stitch-ids {args.stitch_ids}: {error}')
    protocol = latency_protocol(shape, args.device, args.batch_size,
                                args.threads, args.warmup, args.repeats) \
        if args.latency else None
    try:
        backbone.check_input_shape(shape)
    except ValueError as error:
        raise UserInputError(f'--shape {shape[0]} {shape[1]}: {error}')
    table = compute_stitch_table(
        backbone, shape, ids, latency=args.latency,
        batch_size=args.batch_size, threads=args.threads, warmup=args.warmup,
        repeats=args.repeats, progress=True)
    rows = []
    for stitch_id in ids:
        route = backbone.space[stitch_id]
        entry = table[stitch_id]
        row = dict(id=stitch_id, kind=route.kind, route=route.name,
                   flops=entry['flops'], gflops=entry['flops'] / 1e9,
                   params=entry['params'])
        if args.latency:
            row.update(latency_ms=entry['latency_ms'],
                       latency_spread=entry['latency_spread'])
        rows.append(row)
    document = dict(
        stitched=True,
        backbone=type(backbone).__name__,
        key=stitch_table_key(backbone, shape),
        latency=protocol,
        table={str(row['id']): row
               for row in rows})
    return rows, document


def plain_rows(model, shape, args):
    """The one row of a model without a stitched backbone."""
    import torch

    from ..analysis.benchmark import benchmark_model
    from ..analysis.complexity import count_flops
    from ..analysis.stitch_table import latency_protocol
    if args.stitch_ids is not None:
        raise UserInputError(
            '--stitch-ids: this config\'s model has no stitched backbone '
            '(SNNetv2); drop --stitch-ids to get the backbone\'s row.')
    module = _plain_backbone(model)
    inputs = torch.zeros(1, 3, *shape, device=args.device)
    flops = count_flops(module, inputs)
    name = type(getattr(module, 'model', module)).__name__
    row = dict(id=name, kind='backbone', route='-', flops=flops,
               gflops=flops / 1e9,
               params=sum(p.numel() for p in module.parameters()))
    protocol = None
    if args.latency:
        protocol = latency_protocol(shape, args.device, args.batch_size,
                                    args.threads, args.warmup, args.repeats)
        result = benchmark_model(
            module, shape=shape, device=args.device,
            batch_size=args.batch_size, threads=args.threads,
            warmup=args.warmup, repeats=args.repeats, progress=True,
            name=name)['models'][name]
        row.update(latency_ms=result['median_s'] * 1e3,
                   latency_spread=result['spread'])
    document = dict(stitched=False, backbone=name, key=None,
                    latency=protocol, table={'backbone': row})
    return [row], document


def format_table(rows, latency):
    """The rows as an aligned text table."""
    header = ['id', 'kind', 'route', 'GFLOPs', 'params(M)']
    if latency:
        header.append('latency(ms)')
    lines = []
    for row in rows:
        cells = [str(row['id']), row['kind'], row['route'],
                 f'{row["gflops"]:.4g}', f'{row["params"] / 1e6:.3f}']
        if latency:
            cells.append(f'{row["latency_ms"]:.3f}')
        lines.append(cells)
    widths = [max([len(header[i])] + [len(c[i]) for c in lines])
              for i in range(len(header))]
    numeric = {0, 3, 4, 5}

    def fmt(cells):
        return ' | '.join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return '\n'.join([fmt(header), '-+-'.join('-' * w for w in widths)] +
                     [fmt(c) for c in lines])


def write_files(rows, document, out_dir):
    """``stitch_table.json`` (the document) and ``stitch_table.csv`` (one
    line per row); an earlier table there is kept, renamed
    ``stitch_table_<its time>.*``.

    Returns:
        tuple[str, str, list[str]]: the paths written and the new names of
        the earlier table's files (empty if there was none).
    """
    os.makedirs(out_dir, exist_ok=True)
    kept = keep_previous_report(out_dir, TABLE_FILES)
    json_path = osp.join(out_dir, TABLE_FILES[0])
    with open(json_path, 'w') as f:
        json.dump(document, f, indent=1)
    columns = ['id', 'kind', 'route', 'gflops', 'flops', 'params']
    if any('latency_ms' in row for row in rows):
        columns += ['latency_ms', 'latency_spread']
    csv_path = osp.join(out_dir, TABLE_FILES[1])
    with open(csv_path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, '') for c in columns])
    return json_path, csv_path, kept


def main(argv=None):
    """Entry point of ``tools/analysis/get_flops.py``; returns the JSON
    document it wrote."""
    import flexvit_mm  # noqa: F401  (registers the modules)

    from ..analysis.benchmark import BenchmarkError, resolve_protocol
    from ..models.stitching.selection import find_stitched_backbone
    args = parse_args(argv)
    cfg = load_config(args.config)
    apply_cfg_options(cfg, args)
    out_dir = args.out_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    check_output_dir(out_dir, '--out-dir' if args.out_dir else 'The work dir')
    try:  # a bad device or protocol fails before the model is built
        resolve_protocol(args.device, args.batch_size, args.threads)
        if args.warmup < 0 or args.repeats < 1:
            raise BenchmarkError(
                f'Need --warmup >= 0 and --repeats >= 1, got '
                f'--warmup {args.warmup} --repeats {args.repeats}.')
    except BenchmarkError as error:
        raise UserInputError(str(error)) from error
    model = build_model(cfg).to(args.device)
    try:
        backbone = find_stitched_backbone(model)
    except TypeError:
        backbone = None
    if backbone is not None:
        shape = tuple(args.shape) if args.shape else default_shape(
            cfg, backbone)
        rows, document = stitched_rows(backbone, shape, args)
    else:
        shape = tuple(args.shape) if args.shape else PLAIN_SHAPE
        rows, document = plain_rows(model, shape, args)
    document = dict(
        config=args.config, input_shape=list(shape),
        flops_unit='multiply-accumulates per image (fvcore convention), '
        'attention included', **document)
    json_path, csv_path, kept = write_files(rows, document, out_dir)

    what = (f'{len(rows)} stitches of {document["backbone"]}'
            if backbone is not None else
            f'{document["backbone"]} (no stitched backbone: one row)')
    print(f'{osp.basename(args.config)}: {what} at '
          f'{shape[0]}x{shape[1]}')
    print(format_table(rows, args.latency))
    if backbone is not None:
        print('GFLOPs: multiply-accumulates per image of the backbone, '
              'attention included (fvcore convention; compute_stitch_table, '
              'the training sampler\'s table). params: the parameters the '
              'stitch uses.')
    else:
        print('GFLOPs: multiply-accumulates per image of the backbone, '
              'attention included (fvcore convention; count_flops). params: '
              'all of the backbone\'s.')
    if args.latency:
        p = document['latency']
        print(f'latency: median ms per batch of {p["batch_size"]} on '
              f'{p["device"]}, {p["threads"] or "default"} thread(s), '
              f'{"float16 autocast" if p["amp"] else "float32"}, '
              f'{p["warmup"]} warmup + {p["repeats"]} timed rounds; '
              f'{p["machine"]["cpu"]}')
    if kept:
        print(f'kept the earlier table of {out_dir} as {", ".join(kept)}')
    print(f'wrote {json_path} and {csv_path}')
    return document
