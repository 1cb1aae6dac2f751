"""``tools/analysis/benchmark.py``: inference throughput (images/s) of a
config's model or an SHViT variant, or ours vs timm vs official SHViT side
by side (:mod:`flexvit_mm.analysis.benchmark`)."""
import argparse
import json
import os
import os.path as osp

from .common import UserInputError, check_output_file


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0].split(': ', 1)[1])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument('config', nargs='?',
                      help='an mmengine config; its model is built (custom_'
                      'imports and default_scope honoured) and run in '
                      "mode='tensor'")
    what.add_argument('--backbone', metavar='NAME',
                      help='shvit_s1 .. shvit_s4: our SHViT classifier '
                      '(backbone + SHViTClsHead, 1000 classes)')
    what.add_argument('--compare-shvit', metavar='S1,S2,...',
                      help='e.g. s1,s2,s3,s4: ours, timm and (with '
                      '--official-repo) the official SHViT, fused, with '
                      'identical weights, timed interleaved')
    parser.add_argument(
        '--stitches', metavar='IDS',
        help='with a config of a classification SNNetv2: time these stitches '
        '("all", "3,12,80", "2-12") against the same computation as a plain '
        'nn.Sequential of the same timm blocks and linear layers (and the '
        'official model with --official-repo), interleaved; reports '
        'ours/plain per stitch')
    parser.add_argument(
        '--stitch-sweep', metavar='IDS',
        help='with a config of a SNNetv2: evaluate these stitches on one '
        'batch one by one and with shared prefixes, check the outputs are '
        'identical and report measured vs predicted (route-tree FLOPs) '
        'speedup')
    parser.add_argument('--official-repo', metavar='PATH',
                        help='a checkout of github.com/ysj9909/SHViT (with '
                        '--compare-shvit) or github.com/ziplab/SN-Netv2 '
                        '(with --stitches); never part of this repository')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda[:N]; default cuda if available')
    parser.add_argument('--batch-size', type=int,
                        help='default: 16 on CPU, 256 on GPU (the official '
                        'harness)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size; default 224x224, SHViT-S4 256x256')
    parser.add_argument('--threads', type=int,
                        help='torch threads; default 1 on CPU (the official '
                        'harness), unchanged on GPU')
    parser.add_argument('--amp', action=argparse.BooleanOptionalAction,
                        default=None,
                        help='float16 autocast; GPU only, on by default there')
    parser.add_argument('--fuse', action='store_true',
                        help='call switch_to_deploy() on the modules that '
                        'have it (eval mode); --compare-shvit always fuses')
    parser.add_argument('--channels-last', action='store_true',
                        help='convert the model and input to channels_last')
    parser.add_argument('--jit', action='store_true',
                        help='time a torch.jit.trace of the model, as the '
                        'official harness does')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed runs (rounds with --compare-shvit); '
                        'default 10 (5 with --compare-shvit)')
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed runs, the median is reported; default '
                        '30 (15 with --compare-shvit)')
    parser.add_argument('--out', help='write the full result (every run '
                        'time) as JSON here')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='config overrides (with a config)')
    return parser.parse_args(argv)


def run_benchmark(args):
    """Run what ``args`` asks for; returns (result dict, table text)."""
    import torch

    from ..analysis import benchmark as bm
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    common = dict(device=device, batch_size=args.batch_size,
                  threads=args.threads, amp=args.amp,
                  channels_last=args.channels_last, jit=args.jit,
                  progress=not args.no_progress)
    if args.official_repo and not (args.compare_shvit or args.stitches):
        raise UserInputError('--official-repo is used with --compare-shvit '
                             'or --stitches.')
    if args.stitches or args.stitch_sweep:
        return _run_stitch_benchmark(args, device)
    if args.compare_shvit:
        variants = [v for v in args.compare_shvit.split(',') if v.strip()]
        result = bm.compare_shvit(
            variants, args.official_repo, shape=args.shape,
            warmup=5 if args.warmup is None else args.warmup,
            repeats=15 if args.repeats is None else args.repeats, **common)
        return result, bm.format_compare_table(result)
    if args.backbone:
        variant = bm.parse_shvit_variant(args.backbone)
        model = bm.build_shvit_classifier(variant)
        side = bm.SHVIT_RESOLUTION[variant]
        name = f'shvit_{variant}'
    else:
        model = bm.build_from_config(args.config, args.cfg_options)
        side, name = 224, osp.basename(args.config)
    # fail on a bad protocol before paying for the model's first runs
    bm.resolve_protocol(device, args.batch_size, args.threads, args.amp)
    result = bm.benchmark_model(
        model, shape=tuple(args.shape) if args.shape else (side, side),
        fuse=args.fuse, name=name,
        warmup=10 if args.warmup is None else args.warmup,
        repeats=30 if args.repeats is None else args.repeats, **common)
    return result, bm.format_model_table(result)


def _run_stitch_benchmark(args, device):
    from ..analysis import stitch_benchmark as sb
    from ..analysis.benchmark import build_from_config
    from ..models.stitching.selection import (find_stitched_backbone,
                                              parse_stitch_ids)
    if args.stitches and args.stitch_sweep:
        raise UserInputError('Give --stitches or --stitch-sweep, not both.')
    if not args.config:
        raise UserInputError('--stitches and --stitch-sweep need the config '
                             'of a stitched model.')
    model = build_from_config(args.config, args.cfg_options)
    try:
        backbone = find_stitched_backbone(model)
        ids = parse_stitch_ids(args.stitches or args.stitch_sweep,
                               backbone.stitch_ids)
    except (TypeError, ValueError) as error:
        raise UserInputError(str(error)) from error
    side = backbone.anchors[0].patch_embed.img_size
    shape = tuple(args.shape) if args.shape else tuple(side)
    common = dict(shape=shape, device=device, batch_size=args.batch_size,
                  threads=args.threads, progress=not args.no_progress)
    if args.stitch_sweep:
        result = sb.measure_shared_prefix_sweep(
            backbone, ids, repeats=args.repeats or 1, **common)
        return result, sb.format_sweep_table(result)
    official = None
    if args.official_repo:
        from ..analysis.official_snnetv2 import official_twin
        twin = official_twin(backbone, args.official_repo).to(device)

        def official(stitch_id):
            twin.reset_stitch_id(stitch_id)
            return twin

    result = sb.compare_with_plain(
        backbone, ids, official=official,
        warmup=1 if args.warmup is None else args.warmup,
        repeats=5 if args.repeats is None else args.repeats, **common)
    return result, sb.format_plain_table(result, official=bool(official))


def main(argv=None):
    import flexvit_mm  # noqa: F401  (registers the modules)
    from ..analysis.benchmark import BenchmarkError, without_raw_times
    args = parse_args(argv)
    if args.out:
        check_output_file(args.out, '--out')
    try:
        result, table = run_benchmark(args)
    except BenchmarkError as error:
        raise UserInputError(str(error)) from error
    protocol = without_raw_times(result)['protocol']
    print(json.dumps({k: v for k, v in protocol.items() if k != 'machine'}))
    print(json.dumps(protocol['machine']))
    print(table)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
        print(f'wrote {args.out}')
