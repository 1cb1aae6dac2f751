"""Convert SHViT checkpoints (official ``ysj9909/SHViT`` or timm
``shvit_s*``) to the layout of :class:`~flexvit_mm.models.backbones.SHViT`
and :class:`~flexvit_mm.models.heads.SHViTClsHead`.

Layouts (``i`` = stage 1 or 2 for the downsample parts):

=====================  ============================  ==========================
official               timm                          flexvit-mm
=====================  ============================  ==========================
patch_embed.{0,2,4,6}  patch_embed.{0,2,4,6}         stem.{0,1,2,3}
blocks1.j              stages.0.blocks.j             stages.0.blocks.j
blocks{i+1}.0.0.m      stages.i.downsample.0.m       stages.i.downsample.pre_dw
blocks{i+1}.0.1.m      stages.i.downsample.1.m       stages.i.downsample.pre_ffn
blocks{i+1}.1          stages.i.downsample.2         stages.i.downsample.merge
blocks{i+1}.2.0.m      stages.i.downsample.3.m       stages.i.downsample.post_dw
blocks{i+1}.2.1.m      stages.i.downsample.4.m       stages.i.downsample.post_ffn
blocks{i+1}.{j+3}      stages.i.blocks.j             stages.i.blocks.j
head.{bn,l}            head.{bn,l}                   head.{bn,fc}
=====================  ============================  ==========================

Inside a block: ``conv.m`` -> ``dw``, ``mixer.m.pre_norm`` -> ``attn.norm``,
``mixer.m.qkv`` -> ``attn.qkv``, ``mixer.m.proj.1`` -> ``attn.proj``,
``ffn.m`` -> ``ffn``; every ConvBN's ``c`` -> ``conv`` (``bn`` stays).
"""
import re

from ...errors import FlexvitError
from .shvit import SHViT


class IncompatibleSHViTCheckpointError(FlexvitError, ValueError):
    """The checkpoint is not an SHViT checkpoint of the configured
    variant."""


_OFFICIAL_DOWNSAMPLE = {'0.0.m': '0.m', '0.1.m': '1.m', '1': '2',
                        '2.0.m': '3.m', '2.1.m': '4.m'}
_TIMM_DOWNSAMPLE = ['pre_dw', 'pre_ffn', 'merge', 'post_dw', 'post_ffn']


def unwrap_state_dict(checkpoint, prefix=None):
    """The tensor dict of a checkpoint: under 'state_dict' or 'model' if
    present, without a leading ``module.``, restricted to ``prefix`` (which
    is stripped) when given."""
    state = checkpoint
    for key in ('state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise IncompatibleSHViTCheckpointError(
            f'Not a state dict: {type(state).__name__}')
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items()
                 if k.startswith(prefix)}
    return state


def detect_layout(state):
    """'official', 'timm' or 'flexvit' (ours, bare or ``backbone.``/``head.``
    prefixed)."""
    keys = list(state)
    if any(k.startswith('blocks1.') for k in keys):
        return 'official'
    if any(k.startswith('patch_embed.') for k in keys):
        return 'timm'
    if any(k.startswith(('stem.', 'backbone.stem.')) for k in keys):
        return 'flexvit'
    raise IncompatibleSHViTCheckpointError(
        'Not an SHViT checkpoint: found none of the official (blocks1.*), '
        'timm (patch_embed.*) or flexvit-mm (stem.*) keys; first keys: '
        f'{keys[:5]}')


def official_to_timm_key(key):
    """Rename one official key to timm's layout."""
    match = re.match(r'blocks1\.(\d+)\.(.*)', key)
    if match:
        return f'stages.0.blocks.{match[1]}.{match[2]}'
    match = re.match(r'blocks([23])\.(.*)', key)
    if match:
        stage, rest = int(match[1]) - 1, match[2]
        for old, new in _OFFICIAL_DOWNSAMPLE.items():
            if rest.startswith(old + '.'):
                return (f'stages.{stage}.downsample.{new}.'
                        f'{rest[len(old) + 1:]}')
        block, rest = rest.split('.', 1)
        return f'stages.{stage}.blocks.{int(block) - 3}.{rest}'
    return key


def timm_to_flexvit_key(key):
    """Rename one timm key to ours (head keys keep the ``head.`` prefix)."""
    match = re.match(r'patch_embed\.([0246])\.(.*)', key)
    if match:
        key = f'stem.{int(match[1]) // 2}.{match[2]}'
    match = re.match(r'(stages\.\d\.downsample\.)(\d)\.(m\.)?(.*)', key)
    if match:
        key = f'{match[1]}{_TIMM_DOWNSAMPLE[int(match[2])]}.{match[4]}'
    key = (key.replace('.conv.m.', '.dw.')
           .replace('.mixer.m.pre_norm.', '.attn.norm.')
           .replace('.mixer.m.qkv.', '.attn.qkv.')
           .replace('.mixer.m.proj.1.', '.attn.proj.')
           .replace('.ffn.m.', '.ffn.'))
    key = re.sub(r'\.c\.(weight|bias)$', r'.conv.\1', key)
    if key.startswith('head.l.'):
        key = 'head.fc.' + key[len('head.l.'):]
    return key


def infer_arch(state):
    """(embed_dims, depths, partial_dims) of a bare flexvit-layout state."""
    dims, depths, pdims = [], [], []
    for i in range(SHViT.num_stages):
        blocks = {int(m[1]) for k in state
                  for m in [re.match(rf'stages\.{i}\.blocks\.(\d+)\.', k)]
                  if m}
        depths.append(len(blocks))
        dw = state.get(f'stages.{i}.blocks.0.dw.conv.weight')
        dims.append(int(dw.shape[0]) if dw is not None else 0)
        norm = state.get(f'stages.{i}.blocks.0.attn.norm.weight')
        pdims.append(int(norm.shape[0]) if norm is not None else None)
    return dims, depths, pdims


def describe(dims, depths, pdims):
    """'SHViT-S3 (dims 192/352/448, depths 3/5/5, partial dims 48/75/96)'."""
    name = 'SHViT (custom)'
    for key, cfg in SHViT.arch_zoo.items():
        if (cfg['embed_dims'] == list(dims) and cfg['depths'] == list(depths)
                and [p for p, t in zip(cfg['partial_dims'], cfg['types'])
                     if t == 's'] == [p for p in pdims if p is not None]):
            name = f'SHViT-{key.upper()}'
    pd = '/'.join('-' if p is None else str(p) for p in pdims)
    return (f'{name} (dims {"/".join(map(str, dims))}, depths '
            f'{"/".join(map(str, depths))}, partial dims {pd})')


def convert_shvit(checkpoint, arch='s4', dense=False, prefix=None):
    """Convert an official, timm or flexvit-mm SHViT checkpoint.

    Args:
        checkpoint (dict): The loaded checkpoint (a state dict, or a dict
            with it under 'model' or 'state_dict').
        arch (str | dict): The configured variant (as for ``SHViT``); a
            checkpoint of another variant is refused.
        dense (bool): Keep the backbone only (``backbone.`` keys) for
            detection/segmentation; otherwise the classifier is kept too
            (``backbone.`` + ``head.`` keys, for mmpretrain's
            ``ImageClassifier`` with ``SHViTClsHead``).
        prefix (str, optional): Only read keys under this prefix (stripped),
            e.g. 'backbone.'.

    Returns:
        dict: The converted state dict.

    Raises:
        IncompatibleSHViTCheckpointError: Not an SHViT checkpoint, another
            variant, or (without ``dense``) no classifier.
    """
    cfg = SHViT.parse_arch(arch)
    state = unwrap_state_dict(checkpoint, prefix)
    layout = detect_layout(state)
    if layout == 'official':
        state = {official_to_timm_key(k): v for k, v in state.items()}
    if layout in ('official', 'timm'):
        state = {timm_to_flexvit_key(k): v for k, v in state.items()}
    else:
        state = {re.sub(r'^backbone\.', '', k): v for k, v in state.items()}
    # A DeiT-style distillation head (official ``distillation=True``; the
    # released weights have none) has no counterpart here: dropped.
    state = {k: v for k, v in state.items() if not k.startswith('head_dist.')}
    head = {k: v for k, v in state.items() if k.startswith('head.')}
    backbone = {k: v for k, v in state.items() if not k.startswith('head.')}

    found = infer_arch(backbone)
    want = (cfg['embed_dims'], cfg['depths'], [
        p if t == 's' else None
        for p, t in zip(cfg['partial_dims'], cfg['types'])
    ])
    if [list(x) for x in found] != [list(x) for x in want]:
        raise IncompatibleSHViTCheckpointError(
            f'The checkpoint is {describe(*found)}, the config is '
            f'{describe(*want)}; convert with the matching --arch.')
    out = {'backbone.' + k: v for k, v in backbone.items()}
    if not dense:
        if not head:
            raise IncompatibleSHViTCheckpointError(
                'The checkpoint has no classifier (head.*) keys; convert it '
                'with --dense (backbone only).')
        out.update(head)
    return out


def flexvit_to_timm_key(key):
    """Inverse of :func:`timm_to_flexvit_key` (for tests and tools that
    export)."""
    key = re.sub(r'\.conv\.(weight|bias)$', r'.c.\1', key)
    if key.startswith('head.fc.'):
        key = 'head.l.' + key[len('head.fc.'):]
    match = re.match(r'stem\.(\d)\.(.*)', key)
    if match:
        return f'patch_embed.{int(match[1]) * 2}.{match[2]}'
    match = re.match(r'(stages\.\d\.downsample\.)([a-z_]+)\.(.*)', key)
    if match:
        index = _TIMM_DOWNSAMPLE.index(match[2])
        inner = '' if index == 2 else 'm.'
        return f'{match[1]}{index}.{inner}{match[3]}'
    return (key.replace('.dw.', '.conv.m.')
            .replace('.attn.norm.', '.mixer.m.pre_norm.')
            .replace('.attn.qkv.', '.mixer.m.qkv.')
            .replace('.attn.proj.', '.mixer.m.proj.1.')
            .replace('.ffn.', '.ffn.m.'))
