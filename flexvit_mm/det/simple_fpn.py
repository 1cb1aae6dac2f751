"""ViTDet's simple feature pyramid: a multi-scale neck for a plain ViT.

A plain (or stitched) ViT has one resolution, stride 16. ViTDet ("Exploring
Plain Vision Transformer Backbones for Object Detection", Li et al. 2022)
builds the strides 4, 8, 16 and 32 that an FPN-style detector expects from
that single map alone, with no top-down path: two stride-2 deconvolutions
for 1/4, one for 1/8, the map itself for 1/16, a 2x2 max-pool for 1/32.
"""
import numbers
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule

from mmdet.registry import MODELS

# Stride of each built level relative to the backbone map (stride 16).
_SCALES = (4.0, 2.0, 1.0, 0.5)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or value < 1:
        raise ValueError(f'SimpleFPN: {name} must be a positive integer, '
                         f'got {value!r}.')
    return int(value)


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Simple feature pyramid (ViTDet) on one stride-16 map of a plain ViT.

    From the chosen backbone map (``backbone_channel`` channels, stride 16)
    four levels are built:

    - stride 4: deconv 2x2/2 -> norm -> GELU -> deconv 2x2/2, with
      ``in_channels[1]`` then ``in_channels[0]`` channels;
    - stride 8: deconv 2x2/2 to ``in_channels[1]`` channels;
    - stride 16: the map itself;
    - stride 32: 2x2 max-pool of the map.

    Each level then goes through a 1x1 and a 3x3 ``ConvModule`` (both with
    ``norm_cfg`` and ``act_cfg``) to ``out_channels``. Levels beyond the
    fourth (``num_outs=5`` for Mask R-CNN's stride-64 RPN level) are
    1x1/2 max-pools of the previous output, as in mmdet's ``FPN``.

    Args:
        backbone_channel (int): Channels of the backbone map, e.g. 1024 for
            a ViT-L (or an SN-Netv2 whose large anchor is a ViT-L).
        in_channels (Sequence[int]): The widths of the four built levels
            before the 1x1 convs, strides 4, 8, 16, 32, e.g.
            ``[256, 512, 1024, 1024]`` for a 1024-wide ViT (ViTDet's
            ``dim / 4, dim / 2, dim, dim``). The last two must equal
            ``backbone_channel``: those levels are the map itself and its
            max-pool.
        out_channels (int): Channels of every output level.
        num_outs (int): Number of output levels, at least 4: 4 gives
            strides 4-32, 5 adds stride 64. Defaults to 5.
        norm_cfg (dict, optional): Norm of the convs and of the 1/4 branch
            between its deconvs; None for none (the convs then have a
            bias). Defaults to ``dict(type='LayerNorm2d')`` as in ViTDet.
        act_cfg (dict, optional): Activation after the 1x1 and 3x3 convs.
            Defaults to None (ViTDet has none there).
        in_index (int): Which element of the backbone's output sequence is
            the map; negative counts from the end. Defaults to -1, the last
            (e.g. SNNetv2 with ``out_indices=(23,)``).
        init_cfg (dict | list[dict], optional): mmengine initialisation
            config. Defaults to None (the modules' own initialisation).
    """

    def __init__(self,
                 backbone_channel: int,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int = 5,
                 norm_cfg: Optional[dict] = dict(type='LayerNorm2d'),
                 act_cfg: Optional[dict] = None,
                 in_index: int = -1,
                 init_cfg: Optional[Union[dict, list]] = None):
        super().__init__(init_cfg=init_cfg)
        backbone_channel = _positive_int(backbone_channel, 'backbone_channel')
        out_channels = _positive_int(out_channels, 'out_channels')
        num_outs = _positive_int(num_outs, 'num_outs')
        if num_outs < len(_SCALES):
            raise ValueError(
                f'SimpleFPN: num_outs must be at least {len(_SCALES)} (the '
                f'strides 4, 8, 16, 32 it builds), got {num_outs}.')
        if isinstance(in_channels, (str, bytes)) or not isinstance(
                in_channels, Sequence) or len(in_channels) != len(_SCALES):
            raise ValueError(
                'SimpleFPN: in_channels must list the widths of the 4 '
                'levels (strides 4, 8, 16, 32), e.g. [256, 512, 1024, 1024] '
                f'for backbone_channel=1024; got {in_channels!r}.')
        in_channels = [
            _positive_int(c, f'in_channels[{i}]')
            for i, c in enumerate(in_channels)
        ]
        if in_channels[2] != backbone_channel or \
                in_channels[3] != backbone_channel:
            raise ValueError(
                f'SimpleFPN: in_channels[2] and in_channels[3] must equal '
                f'backbone_channel ({backbone_channel}): the stride-16 and '
                f'stride-32 levels are the backbone map and its max-pool, '
                f'whose width does not change; got {in_channels}.')
        if isinstance(in_index, bool) or not isinstance(
                in_index, numbers.Integral):
            raise ValueError(
                f'SimpleFPN: in_index must be an integer, got {in_index!r}.')
        if norm_cfg is not None and not isinstance(norm_cfg, dict):
            raise ValueError(
                f'SimpleFPN: norm_cfg must be a dict or None, got '
                f'{norm_cfg!r}.')
        self.backbone_channel = backbone_channel
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.in_index = int(in_index)

        def norm(channels):
            if norm_cfg is None:
                return nn.Identity()
            return build_norm_layer(norm_cfg, channels)[1]

        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(backbone_channel, in_channels[1], 2, stride=2),
            norm(in_channels[1]),
            nn.GELU(),
            nn.ConvTranspose2d(in_channels[1], in_channels[0], 2, stride=2))
        self.fpn2 = nn.ConvTranspose2d(
            backbone_channel, in_channels[1], 2, stride=2)
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(kernel_size=2, stride=2)

        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for channels in in_channels:
            # inplace=False: with an activation the 1x1 output is not
            # overwritten while autograd may still need it.
            self.lateral_convs.append(
                ConvModule(channels, out_channels, 1, norm_cfg=norm_cfg,
                           act_cfg=act_cfg, inplace=False))
            self.fpn_convs.append(
                ConvModule(out_channels, out_channels, 3, padding=1,
                           norm_cfg=norm_cfg, act_cfg=act_cfg,
                           inplace=False))

    @property
    def strides(self):
        """Stride of each output level for a stride-16 backbone map."""
        return tuple(int(16 / s) for s in _SCALES) + tuple(
            32 * 2**(i + 1) for i in range(self.num_outs - len(_SCALES)))

    def _select(self, inputs) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            feature = inputs
        else:
            if not isinstance(inputs, Sequence) or not inputs:
                raise ValueError(
                    'SimpleFPN expects the backbone\'s sequence of maps (or '
                    f'one map), got {type(inputs).__name__}.')
            if not -len(inputs) <= self.in_index < len(inputs):
                raise ValueError(
                    f'SimpleFPN: in_index {self.in_index} is out of range '
                    f'for the backbone\'s {len(inputs)} outputs.')
            feature = inputs[self.in_index]
            # SNNetv2 with output_cls_token=True gives [map, cls_token].
            if isinstance(feature, (list, tuple)):
                feature = feature[0]
        if feature.dim() != 4 or feature.shape[1] != self.backbone_channel:
            raise ValueError(
                f'SimpleFPN expects an (N, {self.backbone_channel}, H, W) '
                f'map (backbone_channel={self.backbone_channel}), got '
                f'shape {tuple(feature.shape)}.')
        return feature

    def forward(self, inputs) -> tuple:
        """Build the pyramid.

        Args:
            inputs (Sequence[Tensor] | Tensor): The backbone outputs (the
                map at ``in_index`` is used) or the map itself.

        Returns:
            tuple[Tensor]: ``num_outs`` maps of ``out_channels`` channels,
            strides :attr:`strides`.
        """
        x = self._select(inputs)
        levels = (self.fpn1(x), self.fpn2(x), self.fpn3(x), self.fpn4(x))
        outs = [
            fpn_conv(lateral_conv(level)) for level, lateral_conv, fpn_conv
            in zip(levels, self.lateral_convs, self.fpn_convs)
        ]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
