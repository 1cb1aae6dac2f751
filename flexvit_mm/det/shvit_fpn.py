"""A feature pyramid for SHViT (and other stride-16-first backbones).

SHViT's stages sit at strides 16, 32 and 64, so a standard FPN cannot give
the stride-8 (RetinaNet) and stride-4 (Mask R-CNN) levels that mmdet's
heads expect. The official downstream code (ysj9909/SHViT, inherited from
EfficientViT's ``EfficientViTFPN``) synthesises them: after the usual
top-down merge, the stride-16 lateral goes through a chain of 2x2 stride-2
transposed convs (stride 8, then 4), each followed by a 3x3 output conv.
This module is a re-implementation of that design for mmdet 3.x, plus an
alternative that takes the real stride-4/8 maps of SHViT's stem
(``SHViT(with_stem_features=True)``) through 1x1 laterals instead.
"""
import numbers
from typing import Optional, Sequence

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule

from mmdet.registry import MODELS

_EXTRA_CONVS = (False, 'on_input', 'on_lateral', 'on_output')


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or value < 1:
        raise ValueError(f'SHViTFPN: {name} must be a positive integer, '
                         f'got {value!r}.')
    return int(value)


def _channel_list(value, name, allow_empty=False):
    if not isinstance(value, (list, tuple)) or (not value and
                                                not allow_empty):
        raise ValueError(f'SHViTFPN: {name} must be a list of channel '
                         f'counts, got {value!r}.')
    return [_positive_int(c, f'{name}[{i}]') for i, c in enumerate(value)]


@MODELS.register_module()
class SHViTFPN(BaseModule):
    """FPN over SHViT's stride-16/32/64 maps with extra high-resolution
    levels (the official ``EfficientViTFPN`` design, ported).

    Levels, finest first:

    - ``num_extra_trans_convs`` high-resolution levels below the backbone's
      finest map (1: stride 8; 2: strides 4 and 8). Without
      ``stem_in_channels`` they are synthesised as in the official code: the
      merged finest lateral goes through a chain of 2x2 stride-2
      transposed convs (each output feeds the next), then a 3x3 conv. With
      ``stem_in_channels`` they are real stem maps instead: a 1x1 lateral,
      plus the upsampled coarser merged lateral (the usual FPN top-down
      path continued down to them), then a 3x3 conv;
    - the FPN levels of ``in_channels`` (1x1 laterals, nearest top-down
      merge, 3x3 outputs);
    - ``num_outs`` minus those: extra coarse levels, stride-2 3x3 convs
      (``add_extra_convs``) or 1x1 stride-2 max-pools, as mmdet's ``FPN``.

    Inputs are the backbone outputs: the stem maps first (when
    ``stem_in_channels`` is given, finest first, e.g. SHViT's stride-4 and
    stride-8 maps), then the stage maps of ``in_channels``. Stem maps finer
    than needed (the stride-4 map with ``num_extra_trans_convs=1``) are
    ignored and get no parameters.

    A transposed conv exactly doubles the size, so a synthesised level is
    ``2 * ceil(H / 16)`` high where the stem's is ``ceil(H / 8)``; mmdet's
    anchor generators and RoI extractors take the feature sizes as they
    come, so either works, padded input or not.

    Args:
        in_channels (Sequence[int]): Channels of the backbone's stage maps,
            finest first, e.g. ``[224, 336, 448]`` for SHViT-S4.
        out_channels (int): Channels of every output level.
        num_outs (int): Number of output levels, at least
            ``num_extra_trans_convs + len(in_channels)``.
        num_extra_trans_convs (int): Number of high-resolution levels below
            the finest stage map (the official name; 1 for RetinaNet, 2 for
            Mask R-CNN). Defaults to 0.
        stem_in_channels (Sequence[int], optional): Channels of the stem maps
            that precede the stage maps in the inputs, finest first, e.g.
            ``[56, 112]`` for SHViT-S4 with ``with_stem_features=True``.
            When given, the high-resolution levels use the last
            ``num_extra_trans_convs`` of them instead of transposed convs.
            Defaults to None.
        add_extra_convs (bool | str): Extra coarse levels: False for
            max-pools, 'on_input' (the last stage map), 'on_lateral' or
            'on_output' for stride-2 3x3 convs; True means 'on_input'.
            Defaults to False.
        relu_before_extra_convs (bool): ReLU before the 2nd and later extra
            convs. Defaults to False.
        norm_cfg (dict, optional): Norm of every conv. Defaults to None.
        act_cfg (dict, optional): Activation of every conv. Defaults to
            None.
        upsample_cfg (dict): ``F.interpolate`` arguments of the top-down
            path; a ``size`` is given unless ``scale_factor`` is. Defaults
            to ``dict(mode='nearest')``.
        init_cfg (dict | list[dict], optional): Initialisation. Defaults to
            Xavier-uniform for every ``Conv2d`` as mmdet's FPN (the
            transposed convs keep PyTorch's default, as in the official
            code).
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int,
                 num_extra_trans_convs: int = 0,
                 stem_in_channels: Optional[Sequence[int]] = None,
                 add_extra_convs=False,
                 relu_before_extra_convs: bool = False,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None,
                 upsample_cfg: dict = dict(mode='nearest'),
                 init_cfg=dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')):
        super().__init__(init_cfg=init_cfg)
        self.in_channels = _channel_list(in_channels, 'in_channels')
        self.out_channels = _positive_int(out_channels, 'out_channels')
        self.num_outs = _positive_int(num_outs, 'num_outs')
        if isinstance(num_extra_trans_convs, bool) or not isinstance(
                num_extra_trans_convs, numbers.Integral) or \
                num_extra_trans_convs < 0:
            raise ValueError('SHViTFPN: num_extra_trans_convs must be an '
                             'integer >= 0, got '
                             f'{num_extra_trans_convs!r}.')
        self.num_extra_trans_convs = int(num_extra_trans_convs)
        self.stem_in_channels = None if stem_in_channels is None else \
            _channel_list(stem_in_channels, 'stem_in_channels')
        num_fine = self.num_extra_trans_convs
        if self.stem_in_channels is not None:
            if num_fine == 0:
                raise ValueError(
                    'SHViTFPN: stem_in_channels given but '
                    'num_extra_trans_convs=0: no level would use the stem '
                    'maps. Set num_extra_trans_convs to the number of '
                    'high-resolution levels wanted, or drop '
                    'stem_in_channels (and with_stem_features).')
            if num_fine > len(self.stem_in_channels):
                raise ValueError(
                    f'SHViTFPN: num_extra_trans_convs={num_fine} levels '
                    'from the stem, but stem_in_channels='
                    f'{self.stem_in_channels} lists only '
                    f'{len(self.stem_in_channels)} stem maps.')
        num_levels = num_fine + len(self.in_channels)
        if self.num_outs < num_levels:
            raise ValueError(
                f'SHViTFPN: num_outs={self.num_outs} is less than the '
                f'{num_fine} high-resolution + {len(self.in_channels)} '
                f'backbone levels ({num_levels}).')
        if add_extra_convs is True:
            add_extra_convs = 'on_input'
        if add_extra_convs not in _EXTRA_CONVS:
            raise ValueError(
                f'SHViTFPN: add_extra_convs must be one of {_EXTRA_CONVS} '
                f'or True, got {add_extra_convs!r}.')
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        for name, cfg in (('norm_cfg', norm_cfg), ('act_cfg', act_cfg)):
            if cfg is not None and not isinstance(cfg, dict):
                raise ValueError(f'SHViTFPN: {name} must be a dict or None, '
                                 f'got {cfg!r}.')
        if not isinstance(upsample_cfg, dict):
            raise ValueError('SHViTFPN: upsample_cfg must be a dict, got '
                             f'{upsample_cfg!r}.')
        self.upsample_cfg = dict(upsample_cfg)

        def conv(in_ch, kernel, stride=1, conv_cfg=None):
            return ConvModule(
                in_ch, self.out_channels, kernel, stride=stride,
                padding=(kernel - 1) // 2 if conv_cfg is None else 0,
                conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
                inplace=False)

        self.lateral_convs = nn.ModuleList(
            [conv(c, 1) for c in self.in_channels])
        self.fpn_convs = nn.ModuleList(
            [conv(self.out_channels, 3) for _ in self.in_channels])
        # Indices as in the official code (so its weights map one to one):
        # the transposed convs in chain order (stride 8 first), the stem
        # laterals and the 3x3 convs of these levels finest first.
        if self.stem_in_channels is None:
            self.extra_trans_convs = nn.ModuleList([
                conv(self.out_channels, 2, stride=2,
                     conv_cfg=dict(type='deconv')) for _ in range(num_fine)
            ])
            self.stem_lateral_convs = None
        else:
            self.extra_trans_convs = None
            self.stem_lateral_convs = nn.ModuleList(
                [conv(c, 1) for c in self.stem_in_channels[-num_fine:]])
        self.extra_fpn_convs = nn.ModuleList(
            [conv(self.out_channels, 3) for _ in range(num_fine)])
        self.num_coarse = self.num_outs - num_levels
        self.coarse_convs = nn.ModuleList()
        if self.add_extra_convs:
            for i in range(self.num_coarse):
                in_ch = self.in_channels[-1] if (
                    i == 0 and self.add_extra_convs == 'on_input') \
                    else self.out_channels
                self.coarse_convs.append(conv(in_ch, 3, stride=2))

    @property
    def num_inputs(self):
        """How many backbone outputs :meth:`forward` takes."""
        return len(self.stem_in_channels or ()) + len(self.in_channels)

    def _upsample(self, x, like):
        if 'scale_factor' in self.upsample_cfg:
            return F.interpolate(x, **self.upsample_cfg)
        return F.interpolate(x, size=like.shape[2:], **self.upsample_cfg)

    def _check_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError('SHViTFPN expects the backbone\'s tuple of maps, '
                             f'got {type(inputs).__name__}.')
        if len(inputs) != self.num_inputs:
            stem = '' if self.stem_in_channels is None else (
                f'{len(self.stem_in_channels)} stem maps + ')
            raise ValueError(
                f'SHViTFPN expects {stem}{len(self.in_channels)} stage maps '
                f'({self.num_inputs} inputs), got {len(inputs)}. With '
                'stem_in_channels the backbone needs with_stem_features='
                'True (and without it, False); out_indices must match '
                'in_channels.')
        expected = list(self.stem_in_channels or ()) + self.in_channels
        for i, (x, c) in enumerate(zip(inputs, expected)):
            if x.dim() != 4 or x.shape[1] != c:
                raise ValueError(
                    f'SHViTFPN input {i}: expected (N, {c}, H, W), got shape '
                    f'{tuple(x.shape)}.')

    def forward(self, inputs):
        """Build the pyramid.

        Args:
            inputs (Sequence[Tensor]): The backbone maps (stem maps first
                when ``stem_in_channels`` is set).

        Returns:
            tuple[Tensor]: ``num_outs`` maps with ``out_channels`` channels,
            finest first.
        """
        self._check_inputs(inputs)
        num_stem = len(self.stem_in_channels or ())
        stage_maps = inputs[num_stem:]
        laterals = [
            lateral(x) for lateral, x in zip(self.lateral_convs, stage_maps)
        ]
        # top-down merge; not in place: the next step reads laterals[i]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self._upsample(
                laterals[i], laterals[i - 1])

        fine = []  # finest first
        previous = laterals[0]
        for k in range(self.num_extra_trans_convs):
            if self.extra_trans_convs is not None:
                # the official chain: each transposed conv takes the
                # previous one's output (no lateral to merge with)
                previous = self.extra_trans_convs[k](previous)
            else:
                stem_map = inputs[num_stem - 1 - k]
                lateral = self.stem_lateral_convs[-1 - k](stem_map)
                previous = lateral + self._upsample(previous, lateral)
            fine.insert(0, previous)
        outs = [conv(x) for conv, x in zip(self.extra_fpn_convs, fine)]
        outs += [conv(x) for conv, x in zip(self.fpn_convs, laterals)]

        if self.num_coarse:
            if not self.add_extra_convs:
                for _ in range(self.num_coarse):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                source = {
                    'on_input': stage_maps[-1],
                    'on_lateral': laterals[-1],
                    'on_output': outs[-1],
                }[self.add_extra_convs]
                outs.append(self.coarse_convs[0](source))
                for conv in self.coarse_convs[1:]:
                    x = outs[-1]
                    outs.append(conv(F.relu(x) if self.
                                     relu_before_extra_convs else x))
        return tuple(outs)
