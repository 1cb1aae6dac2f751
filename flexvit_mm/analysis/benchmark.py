"""Inference throughput (images/s) of a model, and SHViT side by side with
timm's and the official implementation.

The protocol defaults follow the official harness (``speed_test.py`` of
ysj9909/SHViT, the LeViT/EfficientViT one): on a CPU batch 16 and one
thread in float32, on a GPU batch 256 under float16 AMP, inputs 224x224
except SHViT-S4 at 256x256 (its train/test resolution). Unlike the official
harness, which averages 60 s of runs after 10 s of warmup, a fixed number
of warmup and timed runs is used and the **median** time is reported: on a
shared machine the mean is dragged by the slow outliers that other
processes cause.

Models compared with :func:`compare_shvit` run in ONE process, their timed
runs interleaved round-robin (ABCABC...), so slow phases of the machine
(other jobs, frequency changes, thermal drift) hit every model alike and
the ratios stay meaningful even when the absolute numbers move.
"""
import contextlib
import copy
import importlib.util
import os
import os.path as osp
import platform
import statistics
import sys
import time
import warnings
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn as nn

from ..errors import FlexvitError

#: Input side per SHViT variant in the paper's table and the official
#: harness (S4 is trained and tested at 256).
SHVIT_RESOLUTION = dict(s1=224, s2=224, s3=224, s4=256)

#: The official harness's protocol per device type.
PAPER_PROTOCOL = dict(
    cpu=dict(batch_size=16, threads=1, amp=False),
    cuda=dict(batch_size=256, threads=None, amp=True))


class BenchmarkError(FlexvitError, ValueError):
    """A benchmark request that cannot be run as asked; the message says
    why and what to change."""


# --------------------------------------------------------------------------
# protocol


def resolve_protocol(device='cpu', batch_size=None, threads=None, amp=None):
    """Fill in the paper protocol's defaults for ``device`` and check the
    request.

    Args:
        device (str): 'cpu', 'cuda' or 'cuda:N'.
        batch_size (int, optional): Images per forward; default 16 on a CPU,
            256 on a GPU.
        threads (int, optional): ``torch.set_num_threads`` for the run;
            default 1 on a CPU (the official harness), untouched on a GPU.
        amp (bool, optional): float16 autocast; default on for a GPU, off
            for a CPU. Asking for it on a CPU is an error (the official
            harness measures float32 there, and CPU float16 autocast would
            time a different, much slower kernel set).

    Returns:
        dict: ``device``, ``batch_size``, ``threads``, ``amp``.

    Raises:
        BenchmarkError: Unknown or unavailable device, AMP on a CPU, or a
            non-positive batch size or thread count.
    """
    try:
        dev = torch.device(device)
    except RuntimeError as error:
        raise BenchmarkError(f'Unknown device {device!r}: {error}') from error
    if dev.type not in PAPER_PROTOCOL:
        raise BenchmarkError(
            f'Device {device!r} is not supported; use cpu or cuda[:N].')
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise BenchmarkError(
            f'Device {device!r} was asked for but CUDA is not available '
            'here; use --device cpu.')
    defaults = PAPER_PROTOCOL[dev.type]
    if amp and dev.type != 'cuda':
        raise BenchmarkError(
            '--amp (float16 autocast) needs a CUDA device; the CPU protocol '
            'is float32. Drop --amp or pass --device cuda.')
    protocol = dict(
        device=str(dev),
        batch_size=defaults['batch_size'] if batch_size is None
        else int(batch_size),
        threads=defaults['threads'] if threads is None else int(threads),
        amp=defaults['amp'] if amp is None else bool(amp))
    if protocol['batch_size'] < 1:
        raise BenchmarkError(
            f'--batch-size must be positive, got {batch_size}')
    if protocol['threads'] is not None and protocol['threads'] < 1:
        raise BenchmarkError(f'--threads must be positive, got {threads}')
    return protocol


def machine_info(device='cpu'):
    """What the numbers were measured on: CPU model and count, torch
    version, and the GPU name for a CUDA device."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f
                     if line.startswith('model name')]
        if names:
            cpu = names[-1]
    except OSError:
        pass
    info = dict(cpu=cpu, cpu_count=os.cpu_count(),
                torch=torch.__version__, python=platform.python_version())
    if torch.device(device).type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(torch.device(device))
    return info


@contextlib.contextmanager
def _num_threads(threads):
    """Set torch's intra-op thread count for the block and restore it (a
    library call must not leave the caller's process changed)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------
# models


class _Classifier(nn.Module):
    """Our SHViT backbone + SHViTClsHead as one module (the model the paper
    times: image in, logits out)."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x):
        return self.head(self.backbone(x))


class _TensorMode(nn.Module):
    """Calls an mmengine ``BaseModel`` in ``mode='tensor'`` (the raw network
    output, no data preprocessor and no post-processing), so a config's
    model can be timed and traced like a plain module."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x, mode='tensor')


def parse_shvit_variant(name):
    """'s4', 'S4', 'shvit_s4' or 'shvit-s4' -> 's4'.

    Raises:
        BenchmarkError: Not one of the SHViT variants.
    """
    from ..models.backbones.shvit import SHViT
    key = str(name).strip().lower()
    for prefix in ('shvit_', 'shvit-', 'shvit'):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    if key not in SHViT.arch_zoo:
        raise BenchmarkError(
            f'Unknown SHViT variant {name!r}; choose from '
            f'{", ".join(sorted(SHViT.arch_zoo))} (or shvit_s1 .. shvit_s4).')
    return key


def build_shvit_classifier(variant, num_classes=1000, head=True):
    """Our SHViT (+ SHViTClsHead unless ``head=False``), random weights,
    eval mode.

    Args:
        variant (str): 's1'..'s4' or 'shvit_s1'..'shvit_s4'.
        num_classes (int): Classes of the head. Defaults to 1000.
        head (bool): Add the classifier head (the paper times the whole
            classifier). Defaults to True.
    """
    from ..models.backbones.shvit import SHViT
    from ..models.heads.shvit_head import SHViTClsHead
    arch = parse_shvit_variant(variant)
    backbone = SHViT(arch)
    if not head:
        return backbone.eval()
    return _Classifier(
        backbone,
        SHViTClsHead(num_classes, SHViT.arch_zoo[arch]['embed_dims'][-1])
    ).eval()


def build_from_config(config, cfg_options=None):
    """Build the model of an mmengine config for timing.

    ``custom_imports`` is honoured (``Config.fromfile`` imports them) and
    the config's ``default_scope`` is set before building, as the runners
    do. No checkpoint is loaded and ``init_weights`` is not called: speed
    does not depend on the values (pretrained files need not exist).

    Args:
        config (str | mmengine.Config): Config path or a loaded config.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        nn.Module: The model in eval mode; an mmengine ``BaseModel`` is
        wrapped to run in ``mode='tensor'``.
    """
    from mmengine.config import Config
    from mmengine.model import BaseModel
    from mmengine.registry import MODELS, init_default_scope
    if isinstance(config, str):
        if not osp.isfile(config):
            raise BenchmarkError(f'Config file {config!r} does not exist.')
        cfg = Config.fromfile(config)
    else:
        cfg = config
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise BenchmarkError('The config has no "model" to build.')
    scope = cfg.get('default_scope')
    if scope:
        init_default_scope(scope)
    model = MODELS.build(cfg.model)
    if isinstance(model, BaseModel):
        model = _TensorMode(model)
    return model.eval()


def fuse_model(model):
    """:func:`flexvit_mm.models.deploy.fuse_model`, its errors as
    :class:`BenchmarkError`. Returns the fused module names (empty when
    nothing in the model can be fused)."""
    from ..models.deploy import FuseError
    from ..models.deploy import fuse_model as fuse
    try:
        return fuse(model)
    except FuseError as error:
        raise BenchmarkError(f'fuse_model: {error}') from error


def load_official_shvit(repo):
    """Import ``model/shvit.py`` and ``utils.py`` of a ysj9909/SHViT
    checkout, by path (the official code is never part of this package).

    Args:
        repo (str): The checkout's root.

    Returns:
        tuple: (model module, ``replace_batchnorm`` function). The latter is
        the official fusion routine from ``utils.py``.
    """
    path = osp.join(repo, 'model', 'shvit.py')
    if not osp.isfile(path):
        raise BenchmarkError(
            f'{path} not found; --official-repo must be a checkout of '
            'github.com/ysj9909/SHViT.')
    spec = importlib.util.spec_from_file_location('official_shvit', path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        # the official code imports timm.models.layers (deprecated alias)
        warnings.simplefilter('ignore', FutureWarning)
        spec.loader.exec_module(module)
    spec = importlib.util.spec_from_file_location(
        'official_shvit_utils', osp.join(repo, 'utils.py'))
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    return module, utils.replace_batchnorm


def build_official_shvit(module, arch):
    """The official SHViT of variant ``arch`` from the module
    :func:`load_official_shvit` imported, with a 1000-class head."""
    from ..models.backbones.shvit import SHViT
    cfg = SHViT.arch_zoo[arch]
    return module.SHViT(
        embed_dim=cfg['embed_dims'], depth=cfg['depths'],
        partial_dim=cfg['partial_dims'], types=cfg['types'],
        qk_dim=[cfg['qk_dim']] * 3, num_classes=1000)


@torch.no_grad()
def randomise_norms(model, seed=0):
    """Random BN/GroupNorm affine and BN running statistics, so that fusion
    does real work (fresh BNs fold to near-identities) and the output
    comparison between implementations means something."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            n = m.weight.numel()
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def build_shvit_trio(variant, official_repo=None, seed=0):
    """Ours, timm's and (with ``official_repo``) the official SHViT of one
    variant with identical weights, all fused, eval mode.

    The source weights are random (random BN statistics too), made in the
    official layout when the official code is given, else in timm's, and
    copied into the others through the checkpoint converters
    (:mod:`flexvit_mm.models.backbones.shvit_convert`), strictly.

    Each is fused by its own routine: ours by ``switch_to_deploy``, timm's
    by ``SHViT.fuse()`` (timm >= 1.0 has one), the official one by the
    official ``utils.replace_batchnorm``.

    Args:
        variant (str): 's1'..'s4' (or 'shvit_sN').
        official_repo (str, optional): A ysj9909/SHViT checkout.
        seed (int): Seed of the random weights.

    Returns:
        dict: name -> dict(model=nn.Module, fuse=str) for 'ours', 'timm'
        and, when asked, 'official'; ``fuse`` says how it was fused.
    """
    import timm

    from ..models.backbones.shvit_convert import (convert_shvit,
                                                  official_to_timm_key)
    arch = parse_shvit_variant(variant)
    torch.manual_seed(seed)
    trio = {}
    timm_model = timm.create_model(f'shvit_{arch}', num_classes=1000).eval()
    if official_repo:
        module, replace_batchnorm = load_official_shvit(official_repo)
        official = build_official_shvit(module, arch).eval()
        randomise_norms(official, seed)
        source = official.state_dict()
        timm_model.load_state_dict(
            {official_to_timm_key(k): v for k, v in source.items()},
            strict=True)
    else:
        randomise_norms(timm_model, seed)
        source = timm_model.state_dict()
    ours = build_shvit_classifier(arch)
    state = convert_shvit(source, arch)
    ours.load_state_dict(state, strict=True)

    fuse_model(ours)
    trio['ours'] = dict(model=ours, fuse='switch_to_deploy()')
    if callable(getattr(timm_model, 'fuse', None)):
        timm_model.fuse()
        trio['timm'] = dict(model=timm_model, fuse='timm SHViT.fuse()')
    else:  # an older timm: timed as is, and the JSON says so
        trio['timm'] = dict(model=timm_model,
                            fuse='none (this timm has no SHViT.fuse)')
    if official_repo:
        replace_batchnorm(official)
        trio['official'] = dict(model=official,
                                fuse='official utils.replace_batchnorm')
    return trio


# --------------------------------------------------------------------------
# timing


def _sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def _progress(total, enabled):
    """An mmengine progress bar on stderr (stdout keeps the table), or a
    no-op."""
    if not enabled:
        return None
    from mmengine.utils import ProgressBar
    return ProgressBar(total, file=sys.stderr)


def time_interleaved(runners: Dict[str, Callable[[], object]],
                     warmup: int,
                     repeats: int,
                     device='cpu',
                     progress=False):
    """Time several zero-argument callables, interleaved round-robin.

    Warmup and timed runs both go A, B, C, A, B, C, ...; each timed run is
    bracketed by device synchronisation on a GPU.

    Args:
        runners (dict): name -> callable running one forward.
        warmup (int): Untimed rounds (each runs every callable once).
        repeats (int): Timed rounds.
        device (str): For synchronisation.
        progress (bool): Show a progress bar.

    Returns:
        tuple: (dict name -> list of seconds, list of names in the order
        the timed runs were made).
    """
    if warmup < 0 or repeats < 1:
        raise BenchmarkError(f'Need warmup >= 0 and repeats >= 1, got '
                             f'warmup={warmup}, repeats={repeats}.')
    names = list(runners)
    times = {name: [] for name in names}
    order = []
    bar = _progress((warmup + repeats) * len(names), progress)
    for round_ in range(warmup + repeats):
        for name in names:
            _sync(device)
            start = time.perf_counter()
            runners[name]()
            _sync(device)
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(elapsed)
                order.append(name)
            if bar is not None:
                bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    return times, order


def summarise(times: Sequence[float], batch_size: int):
    """Median-based summary of one model's timed runs.

    Args:
        times (Sequence[float]): Seconds per forward.
        batch_size (int): Images per forward.

    Returns:
        dict: ``images_per_s`` (batch / median time), ``median_s``,
        ``min_s``, ``max_s``, ``spread`` ((q3 - q1) / median, a noise
        indicator) and the raw ``times_s``.
    """
    times = sorted(times)
    median = statistics.median(times)
    if len(times) >= 4:
        q1, _, q3 = statistics.quantiles(times, n=4)
    else:
        q1, q3 = times[0], times[-1]
    return dict(images_per_s=batch_size / median, median_s=median,
                min_s=times[0], max_s=times[-1],
                spread=(q3 - q1) / median, times_s=times)


def _prepare(model, inputs, protocol, channels_last, jit):
    """Move to the device, set the memory format, optionally trace; returns
    a zero-argument callable running one forward."""
    device = protocol['device']
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if jit:
        # As the official harness: a TorchScript trace of the fused model.
        with torch.no_grad():
            try:
                model = torch.jit.trace(model, inputs, check_trace=False)
            except Exception as error:  # noqa: BLE001 - surfaced to the user
                raise BenchmarkError(
                    f'torch.jit.trace failed on this model ({error}); run '
                    'without --jit.') from error
    amp = protocol['amp']

    def forward():
        with torch.no_grad(), torch.autocast(
                'cuda', dtype=torch.float16, enabled=amp) if amp \
                else contextlib.nullcontext():
            return model(inputs)

    return forward


def _inputs(batch_size, shape, protocol, channels_last):
    x = torch.randn(batch_size, 3, *shape, device=protocol['device'])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def benchmark_model(model,
                    shape=(224, 224),
                    device='cpu',
                    batch_size=None,
                    threads=None,
                    amp=None,
                    fuse=False,
                    channels_last=False,
                    jit=False,
                    warmup=10,
                    repeats=30,
                    progress=False,
                    name='model'):
    """Images/s of one model.

    Args:
        model (nn.Module): The model; it is put in eval mode (timing is for
            inference) before an optional fuse.
        shape (tuple[int, int]): Input (H, W). Defaults to (224, 224).
        device, batch_size, threads, amp: See :func:`resolve_protocol`.
        fuse (bool): :func:`fuse_model` first. Defaults to False.
        channels_last (bool): Convert the model and input to channels_last.
        jit (bool): Time a ``torch.jit.trace`` of the model (the official
            harness does). Defaults to False.
        warmup (int): Untimed runs. Defaults to 10.
        repeats (int): Timed runs; the median is reported. Defaults to 30.
        progress (bool): Show a progress bar.
        name (str): Label in the result.

    Returns:
        dict: ``protocol`` (settings, machine), ``models`` ({name: summary
        as :func:`summarise` + ``fused`` module names}) and ``order``.
    """
    protocol = resolve_protocol(device, batch_size, threads, amp)
    protocol.update(shape=list(shape), channels_last=channels_last, jit=jit,
                    warmup=warmup, repeats=repeats,
                    machine=machine_info(protocol['device']))
    model.eval()
    fused = fuse_model(model) if fuse else []
    with _num_threads(protocol['threads']):
        x = _inputs(protocol['batch_size'], shape, protocol, channels_last)
        runner = _prepare(model, x, protocol, channels_last, jit)
        times, order = time_interleaved({name: runner}, warmup, repeats,
                                        protocol['device'], progress)
    result = summarise(times[name], protocol['batch_size'])
    result['fused'] = fused
    return dict(protocol=protocol, models={name: result}, order=order)


def _rel_err(a, b):
    a, b = a.float(), b.float()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def compare_shvit(variants: Sequence[str] = ('s1', 's2', 's3', 's4'),
                  official_repo: Optional[str] = None,
                  device='cpu',
                  batch_size=None,
                  threads=None,
                  amp=None,
                  shape=None,
                  channels_last=False,
                  jit=False,
                  warmup=5,
                  repeats=15,
                  progress=False,
                  seed=0):
    """Ours vs timm vs official SHViT, fused, identical weights, timed
    interleaved in this process.

    For each variant the two or three models are built by
    :func:`build_shvit_trio`, their outputs on the benchmark input are
    compared (``max_rel_err`` against the first other implementation: a
    check that the same function is being timed), then the timed runs go
    round-robin. Ratios are of the median images/s: > 1 means ours is
    faster.

    Args:
        variants (Sequence[str]): SHViT variants, e.g. ('s1', 's4').
        official_repo (str, optional): A ysj9909/SHViT checkout; without it
            only ours and timm are compared.
        device, batch_size, threads, amp: See :func:`resolve_protocol`.
        shape (tuple[int, int], optional): Input (H, W) for every variant;
            default the paper's (224, S4 256).
        channels_last (bool): Also convert every model and the input to
            channels_last (ours runs channels_last internally regardless;
            timm's and the official run NCHW by default, as in the paper
            harness).
        jit (bool): Time ``torch.jit.trace`` of each (the official harness
            does).
        warmup (int): Untimed rounds. Defaults to 5.
        repeats (int): Timed rounds. Defaults to 15.
        progress (bool): Show a progress bar.
        seed (int): Seed of the random weights and input.

    Returns:
        dict: ``protocol`` and ``variants`` -> {variant: dict(shape,
        models={name: summary + fuse}, ratios={'ours/official', 'ours/timm'}
        (of the medians), paired_ratios (median over rounds of the
        per-round ratio), max_rel_err, order)}.
    """
    keys = [parse_shvit_variant(v) for v in variants]
    if not keys:
        raise BenchmarkError('No SHViT variant given to compare.')
    protocol = resolve_protocol(device, batch_size, threads, amp)
    protocol.update(channels_last=channels_last, jit=jit, warmup=warmup,
                    repeats=repeats, official_repo=official_repo,
                    interleaving='round-robin per variant',
                    machine=machine_info(protocol['device']))
    results = {}
    with _num_threads(protocol['threads']):
        for key in keys:
            side = SHVIT_RESOLUTION[key]
            hw = tuple(shape) if shape else (side, side)
            trio = build_shvit_trio(key, official_repo, seed)
            torch.manual_seed(seed)
            x = _inputs(protocol['batch_size'], hw, protocol, channels_last)
            runners = {
                name: _prepare(entry['model'], x, protocol, channels_last,
                               jit)
                for name, entry in trio.items()
            }
            outputs = {name: run() for name, run in runners.items()}
            ref = 'official' if 'official' in outputs else 'timm'
            errors = {name: _rel_err(out, outputs[ref])
                      for name, out in outputs.items() if name != ref}
            if progress:
                print(f'SHViT-{key.upper()} @{hw[0]}x{hw[1]}: timing '
                      f'{", ".join(runners)}', file=sys.stderr)
            times, order = time_interleaved(runners, warmup, repeats,
                                            protocol['device'], progress)
            models = {}
            for name in runners:
                models[name] = summarise(times[name], protocol['batch_size'])
                models[name]['fuse'] = trio[name]['fuse']
            ratios = {
                f'ours/{other}': models['ours']['images_per_s'] /
                models[other]['images_per_s']
                for other in ('official', 'timm') if other in models
            }
            # Per-round ratio (runs of one round are back to back, so they
            # share the machine's state): a load change between rounds,
            # which moves every median, cancels out here.
            paired = {
                f'ours/{other}': statistics.median(
                    t_other / t_ours for t_ours, t_other in zip(
                        times['ours'], times[other]))
                for other in ('official', 'timm') if other in models
            }
            results[key] = dict(shape=list(hw), models=models, ratios=ratios,
                                paired_ratios=paired,
                                max_rel_err=dict(reference=ref, **errors),
                                order=order)
            del trio, runners, outputs
    return dict(protocol=protocol, variants=results)


# --------------------------------------------------------------------------
# reporting


def format_compare_table(result):
    """A Markdown table of :func:`compare_shvit`'s result."""
    names = ['ours', 'official', 'timm']
    present = [n for n in names
               if any(n in v['models'] for v in result['variants'].values())]
    ratio_keys = [f'ours/{n}' for n in ('official', 'timm') if n in present]
    head = (['variant', 'input'] + [f'{n} img/s' for n in present] +
            ratio_keys + [f'{r} paired' for r in ratio_keys] +
            ['spread (max)'])
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * len(head)]
    for key, v in result['variants'].items():
        row = [f'S{key[1:]}', f'{v["shape"][0]}x{v["shape"][1]}']
        row += [f'{v["models"][n]["images_per_s"]:.1f}'
                if n in v['models'] else '-' for n in present]
        row += [f'{v["ratios"][r]:.3f}' for r in ratio_keys]
        row += [f'{v["paired_ratios"][r]:.3f}' for r in ratio_keys]
        row.append(f'{max(m["spread"] for m in v["models"].values()):.1%}')
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def format_model_table(result):
    """A Markdown table of :func:`benchmark_model`'s result."""
    lines = ['| model | img/s (median) | median ms/batch | spread | fused |',
             '|---|---|---|---|---|']
    for name, m in result['models'].items():
        lines.append(f'| {name} | {m["images_per_s"]:.1f} | '
                     f'{m["median_s"] * 1e3:.2f} | {m["spread"]:.1%} | '
                     f'{", ".join(f or "<model>" for f in m["fused"]) or "-"}'
                     ' |')
    return '\n'.join(lines)


def without_raw_times(result):
    """A copy of a result without the per-run ``times_s`` lists (for
    printing)."""
    result = copy.deepcopy(result)
    for holder in ([result] + list(result.get('variants', {}).values())):
        for m in holder.get('models', {}).values():
            m.pop('times_s', None)
    return result


__all__ = [
    'BenchmarkError', 'PAPER_PROTOCOL', 'SHVIT_RESOLUTION', 'benchmark_model',
    'build_from_config', 'build_shvit_classifier', 'build_shvit_trio',
    'compare_shvit', 'format_compare_table', 'format_model_table',
    'fuse_model', 'load_official_shvit', 'machine_info', 'parse_shvit_variant',
    'resolve_protocol', 'summarise', 'time_interleaved', 'without_raw_times'
]
