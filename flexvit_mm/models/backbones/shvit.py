"""SHViT backbone (Yun & Ro, "SHViT: Single-Head Vision Transformer with
Memory Efficient Macro Design", CVPR 2024, arXiv 2401.16456).

Written for this package (not built on ``timm.models.shvit``) because:

* the key layout is mmpretrain-like (``stem.{0..3}``, ``stages.{i}.
  downsample`` / ``stages.{i}.blocks.{j}`` with ``conv``/``bn`` children),
  and frozen stages, norm_eval, stem features and ``init_cfg`` fit the
  module tree directly;
* deploy mode is faster on a CPU than timm's and the official fused models
  while computing the same function (checked to 1e-5 relative):

  - every Conv+BN is one biased Conv, and each residual depthwise 3x3 conv
    (``x + DW(x)``) is one depthwise conv with 1 added at the kernel centre,
    as in the official ``Residual.fuse``;
  - the attention scale ``qk_dim ** -0.5`` is folded into the query rows of
    the fused qkv conv, which removes one N x N multiply per block;
  - the residual adds around the FFN and the attention are in place on the
    branch output, and ReLUs are in place where their input is a fresh
    temporary, which saves allocations (the branch outputs are conv/BN
    outputs, which autograd does not save, so this is also training-safe);
  - the whole network runs channels_last (``channels_last=True``): 1x1 and
    3x3 convs dominate the time (96% on a CPU) and oneDNN runs them about
    25% faster in NHWC than in NCHW, and the attention then reads its
    (B, N, C) tokens as a free view of the qkv map. With N = 16..1050 tokens
    and one 16-dim head, plain batched matmuls + softmax are used
    (``scaled_dot_product_attention`` brings nothing on CPU there).

Feature sizes: every stride-2 conv is 3x3 with padding 1, so each level is
``ceil(previous / 2)``, i.e. ``ceil(H / stride)``; 800x1333 gives 200x334,
100x167, 50x84, 25x42 and 13x21 at strides 4 to 64.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm


def _fold_bn(weight, bias, bn):
    """Fold an eval-mode BatchNorm that follows a conv with ``weight`` (and
    optional ``bias``) into a new (weight, bias) pair."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1, ) + (1, ) * (weight.dim() - 1)
    new_weight = weight * scale.reshape(shape)
    new_bias = bn.bias - bn.running_mean * scale
    if bias is not None:
        new_bias = new_bias + bias * scale
    return new_weight, new_bias


class ConvBN(nn.Module):
    """Conv2d without bias followed by BatchNorm2d (the official
    ``Conv2d_BN``).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel size. Defaults to 1.
        stride (int): Stride. Defaults to 1.
        groups (int): Conv groups. Defaults to 1.
        bn_weight_init (float): Initial BN weight; 0 makes a residual branch
            start as the identity. Defaults to 1.
    """

    def __init__(self,
                 in_channels,
                 out_channels,
                 kernel_size=1,
                 stride=1,
                 groups=1,
                 bn_weight_init=1.):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=groups,
            bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0)

    def forward(self, x):
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fuse(self):
        """Return one biased ``nn.Conv2d`` computing the same function with
        the BN running statistics."""
        conv = self.conv
        weight, bias = _fold_bn(conv.weight, None, self.bn)
        fused = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            groups=conv.groups,
            bias=True,
            device=weight.device,
            dtype=weight.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        return fused


class ResidualDWConvBN(ConvBN):
    """``x + BN(DWConv3x3(x))``; fuses into a single depthwise conv whose
    kernel centre carries the identity.

    Args:
        channels (int): Channels (the conv is depthwise).
        bn_weight_init (float): Initial BN weight. Defaults to 1.
    """

    def __init__(self, channels, bn_weight_init=1.):
        super().__init__(
            channels,
            channels,
            3,
            groups=channels,
            bn_weight_init=bn_weight_init)

    def forward(self, x):
        return self.bn(self.conv(x)).add_(x)

    @torch.no_grad()
    def fuse(self):
        fused = super().fuse()
        # identity == a depthwise kernel with 1 at the centre tap
        fused.weight[:, 0, 1, 1] += 1
        return fused


class FFN(nn.Module):
    """1x1 ConvBN (dim -> hidden), ReLU, 1x1 ConvBN (hidden -> dim); the
    residual add is done by the caller.

    Args:
        dim (int): Input and output channels.
        hidden_dim (int): Hidden channels (2 * dim in SHViT).
    """

    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.pw1 = ConvBN(dim, hidden_dim)
        self.pw2 = ConvBN(hidden_dim, dim, bn_weight_init=0.)

    def forward(self, x):
        # the pw1 output is a temporary: ReLU can overwrite it
        return self.pw2(F.relu(self.pw1(x), inplace=True))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with a ReLU bottleneck and a sigmoid gate
    (timm's ``SEModule`` semantics, reduction rounded to the nearest multiple
    of 8).

    Args:
        channels (int): Channels.
        ratio (float): Bottleneck ratio. Defaults to 0.25.
    """

    def __init__(self, channels, ratio=0.25):
        super().__init__()
        reduced = max(8, int(channels * ratio + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        gate = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * gate.sigmoid()


class PatchMerging(nn.Module):
    """Stride-2 inverted residual without skip: 1x1 (4x expansion), ReLU,
    DW 3x3 stride 2, ReLU, SE, 1x1.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        hidden = in_channels * 4
        self.conv1 = ConvBN(in_channels, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, stride=2, groups=hidden)
        self.se = SqueezeExcite(hidden, 0.25)
        self.conv3 = ConvBN(hidden, out_channels)

    def forward(self, x):
        x = F.relu(self.conv1(x), inplace=True)
        x = F.relu(self.conv2(x), inplace=True)
        return self.conv3(self.se(x))


class SHSA(nn.Module):
    """Single-head self-attention over the first ``partial_dim`` channels;
    the other channels bypass it and are mixed back by the projection.

    Args:
        dim (int): Channels.
        qk_dim (int): Query/key dim. Defaults to 16.
        partial_dim (int): Channels that take part in the attention.
    """

    def __init__(self, dim, qk_dim, partial_dim):
        super().__init__()
        self.dim = dim
        self.qk_dim = qk_dim
        self.partial_dim = partial_dim
        # 1.0 once the scale is folded into the qkv weights (deploy)
        self.scale = qk_dim**-0.5
        self.norm = nn.GroupNorm(1, partial_dim)
        self.qkv = ConvBN(partial_dim, 2 * qk_dim + partial_dim)
        self.proj = ConvBN(dim, dim, bn_weight_init=0.)

    def forward(self, x):
        B, _, H, W = x.shape
        x1, x2 = torch.split(x, [self.partial_dim, self.dim - self.partial_dim],
                             dim=1)
        # tokens as (B, N, C): a free view when x is channels_last
        qkv = self.qkv(self.norm(x1)).permute(0, 2, 3, 1).reshape(B, H * W, -1)
        q, k, v = torch.split(
            qkv, [self.qk_dim, self.qk_dim, self.partial_dim], dim=2)
        attn = q @ k.transpose(1, 2)  # B, N (queries), N (keys)
        if self.scale != 1.:
            attn = attn * self.scale
        attn = attn.softmax(dim=-1)
        # (B, N, pdim) viewed as a channels_last (B, pdim, H, W) map
        x1 = (attn @ v).view(B, H, W, self.partial_dim).permute(0, 3, 1, 2)
        return self.proj(F.relu(torch.cat([x1, x2], dim=1), inplace=True))

    @torch.no_grad()
    def fold_scale(self):
        """Move the attention scale into the (already fused) qkv conv's query
        rows."""
        if self.scale == 1.:
            return
        if not isinstance(self.qkv, nn.Conv2d):
            raise RuntimeError('fold_scale needs the fused qkv conv.')
        self.qkv.weight[:self.qk_dim] *= self.scale
        self.qkv.bias[:self.qk_dim] *= self.scale
        self.scale = 1.


class SHViTBlock(nn.Module):
    """Residual DW 3x3 conv, residual SHSA (type 's') or nothing (type 'i'),
    residual FFN.

    Args:
        dim (int): Channels.
        qk_dim (int): Query/key dim of the attention.
        partial_dim (int): Attention channels.
        block_type (str): 's' (with attention) or 'i' (without).
    """

    def __init__(self, dim, qk_dim, partial_dim, block_type):
        super().__init__()
        self.dw = ResidualDWConvBN(dim, bn_weight_init=0.)
        self.attn = SHSA(dim, qk_dim, partial_dim) \
            if block_type == 's' else None
        self.ffn = FFN(dim, 2 * dim)

    def forward(self, x):
        x = self.dw(x)
        if self.attn is not None:
            x = self.attn(x).add_(x)
        return self.ffn(x).add_(x)


class SHViTDownsample(nn.Module):
    """Residual DW + FFN at the old resolution, PatchMerging, residual DW +
    FFN at the new resolution (these DW BNs start at weight 1).

    Args:
        in_channels (int): Channels of the previous stage.
        out_channels (int): Channels of this stage.
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.pre_dw = ResidualDWConvBN(in_channels)
        self.pre_ffn = FFN(in_channels, 2 * in_channels)
        self.merge = PatchMerging(in_channels, out_channels)
        self.post_dw = ResidualDWConvBN(out_channels)
        self.post_ffn = FFN(out_channels, 2 * out_channels)

    def forward(self, x):
        x = self.pre_dw(x)
        x = self.pre_ffn(x).add_(x)
        x = self.post_dw(self.merge(x))
        return self.post_ffn(x).add_(x)


class SHViTStage(nn.Module):
    """An optional downsample followed by ``depth`` blocks."""

    def __init__(self, in_channels, out_channels, depth, qk_dim, partial_dim,
                 block_type):
        super().__init__()
        self.downsample = SHViTDownsample(in_channels, out_channels) \
            if in_channels != out_channels else None
        self.blocks = nn.Sequential(*[
            SHViTBlock(out_channels, qk_dim, partial_dim, block_type)
            for _ in range(depth)
        ])

    def forward(self, x):
        if self.downsample is not None:
            x = self.downsample(x)
        return self.blocks(x)


def _fuse_children(module):
    """Replace every child that has ``fuse()`` by its fused module,
    recursively (the official ``replace_batchnorm``)."""
    for name, child in module.named_children():
        if hasattr(child, 'fuse'):
            setattr(module, name, child.fuse())
        else:
            _fuse_children(child)


@MODELS.register_module()
class SHViT(BaseModule):
    """SHViT backbone: a 4-conv stride-16 stem and three stages at strides
    16, 32 and 64.

    Args:
        arch (str | dict): 's1', 's2', 's3', 's4', or a dict with keys
            ``embed_dims``, ``depths``, ``partial_dims`` and ``types`` (3
            entries each; types are 'i' or 's'), optionally ``qk_dim``
            (default 16). Defaults to 's4'.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages to output, 0, 1, 2 (strides
            16, 32, 64; negative counts from the end). Defaults to (2, ).
        with_stem_features (bool): Also output, first, the stem's stride-4
            and stride-8 maps: the ReLU outputs after the 2nd and the 3rd
            stem ConvBN (C1/4 and C1/2 channels). Defaults to False.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k >= 1 the stem
            and stages 0..k-1 (parameters fixed, BN in eval mode).
            Defaults to -1.
        norm_eval (bool): Keep every BN in eval mode while training (running
            statistics frozen). Defaults to False.
        channels_last (bool): Run in the channels_last memory format: the
            input is made channels_last and every feature map stays so (same
            NCHW shapes, other strides). oneDNN's convs are ~25% faster so on
            CPU, and the attention's (B, N, C) token view becomes free.
            Defaults to True.
        deploy (bool): Build the fused structure right away, e.g. to load a
            state dict saved after :meth:`switch_to_deploy`. Defaults to
            False.
        init_cfg (dict | list[dict], optional): Initialisation. A
            ``Pretrained`` checkpoint may be an official, timm or converted
            (``backbone.``-prefixed or bare) SHViT checkpoint of the same
            variant; it is converted on the fly and loaded strictly.
    """

    arch_zoo = {
        's1': dict(embed_dims=[128, 224, 320], depths=[2, 4, 5],
                   partial_dims=[32, 48, 68], types=['i', 's', 's'],
                   qk_dim=16),
        's2': dict(embed_dims=[128, 308, 448], depths=[2, 4, 5],
                   partial_dims=[32, 66, 96], types=['i', 's', 's'],
                   qk_dim=16),
        's3': dict(embed_dims=[192, 352, 448], depths=[3, 5, 5],
                   partial_dims=[48, 75, 96], types=['i', 's', 's'],
                   qk_dim=16),
        's4': dict(embed_dims=[224, 336, 448], depths=[4, 7, 6],
                   partial_dims=[48, 72, 96], types=['i', 's', 's'],
                   qk_dim=16),
    }
    num_stages = 3

    def __init__(self,
                 arch='s4',
                 in_channels=3,
                 out_indices=(2, ),
                 with_stem_features=False,
                 frozen_stages=-1,
                 norm_eval=False,
                 channels_last=True,
                 deploy=False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self.parse_arch(arch)
        self.arch_name = arch if isinstance(arch, str) else None
        cfg = self.arch_settings
        dims = cfg['embed_dims']

        if isinstance(out_indices, int):
            out_indices = [out_indices]
        if not isinstance(out_indices, (list, tuple)) or not out_indices:
            raise TypeError('out_indices must be an int or a non-empty '
                            f'sequence of ints, got {out_indices!r}')
        indices = []
        for index in out_indices:
            if not isinstance(index, int) or not (
                    -self.num_stages <= index < self.num_stages):
                raise ValueError(
                    f'out_indices {tuple(out_indices)} has {index!r}; SHViT '
                    f'has {self.num_stages} stages: use 0, 1, 2 (strides '
                    '16, 32, 64) or -3..-1.')
            indices.append(index % self.num_stages)
        self.out_indices = tuple(sorted(set(indices)))
        self.with_stem_features = bool(with_stem_features)
        if not isinstance(frozen_stages, int) or not (
                -1 <= frozen_stages <= self.num_stages):
            raise ValueError(f'frozen_stages must be in -1..{self.num_stages},'
                             f' got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.channels_last = channels_last

        c1 = dims[0]
        stem_dims = [in_channels, c1 // 8, c1 // 4, c1 // 2, c1]
        self.stem = nn.ModuleList([
            ConvBN(stem_dims[i], stem_dims[i + 1], 3, stride=2)
            for i in range(4)
        ])
        self.stages = nn.ModuleList()
        prev = c1
        for i in range(self.num_stages):
            self.stages.append(
                SHViTStage(prev, dims[i], cfg['depths'][i], cfg['qk_dim'],
                           cfg['partial_dims'][i], cfg['types'][i]))
            prev = dims[i]
        self.out_channels = ([c1 // 4, c1 // 2] if self.with_stem_features
                             else []) + [dims[i] for i in self.out_indices]
        self.out_strides = ([4, 8] if self.with_stem_features else []) + [
            16 * 2**i for i in self.out_indices
        ]
        self.deploy = False
        self._freeze_stages()
        if deploy:
            self.switch_to_deploy()

    @classmethod
    def parse_arch(cls, arch):
        """Return the validated settings dict of ``arch`` (a name or a
        dict)."""
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(
                    f'Unknown SHViT arch {arch!r}; valid archs: '
                    f'{sorted(cls.arch_zoo)} or a dict with embed_dims, '
                    'depths, partial_dims, types (and optionally qk_dim).')
            return copy.deepcopy(cls.arch_zoo[key])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {arch!r}')
        required = {'embed_dims', 'depths', 'partial_dims', 'types'}
        missing = required - set(arch)
        unknown = set(arch) - required - {'qk_dim'}
        if missing or unknown:
            raise ValueError(
                f'Custom SHViT arch: missing keys {sorted(missing)}, unknown '
                f'keys {sorted(unknown)}; needed: {sorted(required)} '
                '(and optionally qk_dim).')
        cfg = dict(qk_dim=16)
        cfg.update(copy.deepcopy(arch))
        for key in sorted(required):
            if len(cfg[key]) != cls.num_stages:
                raise ValueError(f'Custom SHViT arch: {key} needs '
                                 f'{cls.num_stages} entries, got {cfg[key]}')
        for i, (dim, pdim, kind) in enumerate(
                zip(cfg['embed_dims'], cfg['partial_dims'], cfg['types'])):
            if kind not in ('i', 's'):
                raise ValueError(f"Custom SHViT arch: types[{i}] is {kind!r};"
                                 " use 'i' (no attention) or 's' (SHSA).")
            if kind == 's' and not 0 < pdim < dim:
                raise ValueError(
                    f'Custom SHViT arch: partial_dims[{i}]={pdim} must be in '
                    f'1..{dim - 1} (embed_dims[{i}]={dim}).')
        if cfg['embed_dims'][0] % 8:
            raise ValueError('Custom SHViT arch: embed_dims[0] must be a '
                             'multiple of 8 (the stem widths are C/8, C/4, '
                             f"C/2), got {cfg['embed_dims'][0]}")
        return cfg

    def forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        for i, layer in enumerate(self.stem):
            x = layer(x)
            if i < 3:
                x = F.relu(x, inplace=True)
                if self.with_stem_features and i >= 1:
                    outs.append(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
            # stages after the last requested one would be wasted work
            if i >= self.out_indices[-1]:
                break
        return tuple(outs)

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        modules = [self.stem] + [
            self.stages[i] for i in range(self.frozen_stages)
        ]
        for module in modules:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def init_weights(self):
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == \
                'Pretrained':
            # mmengine's loader would silently skip official/timm keys; load
            # through the converter instead, strictly.
            from mmengine.runner.checkpoint import CheckpointLoader

            from .shvit_convert import convert_shvit, unwrap_state_dict

            # mmengine's loader: any scheme (file, URL), read safely (see
            # flexvit_mm.compat).
            checkpoint = CheckpointLoader.load_checkpoint(
                init_cfg['checkpoint'], map_location='cpu')
            state = convert_shvit(
                checkpoint,
                self.arch_settings,
                dense=True,
                prefix=init_cfg.get('prefix'))
            state = {k[len('backbone.'):]: v for k, v in state.items()}
            self.load_state_dict(state, strict=True)
            source = unwrap_state_dict(checkpoint, init_cfg.get('prefix'))
            if len(source) > len(state):
                print_log(
                    f'SHViT init_cfg: {len(source) - len(state)} of the '
                    f'{len(source)} tensors of {init_cfg["checkpoint"]} are '
                    'not backbone weights (classifier or distillation head) '
                    'and were left out.', logger='current')
            self._is_init = True
            return
        super().init_weights()

    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold every Conv+BN into a Conv, each residual depthwise conv's
        identity into its kernel and the attention scale into the qkv conv.
        Irreversible; a second call raises ``RuntimeError``."""
        if self.deploy:
            raise RuntimeError('SHViT is already fused (switch_to_deploy was '
                               'called before); rebuild it to fuse again.')
        _fuse_children(self)
        for module in self.modules():
            if isinstance(module, SHSA):
                module.fold_scale()
        self.deploy = True
