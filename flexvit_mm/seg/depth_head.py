"""A DPT decoder that regresses metric depth (mmseg 1.x depth head).

mmseg 1.x ships DPT only as a segmentation head (``DPTHead`` ends in a
classifier) and a single depth head (``VPDDepthHead``). This module puts
mmseg's DPT blocks (reassemble, fusion, residual units) in front of the depth
output of the official SN-Netv2 depth code (ziplab/SN-Netv2
``depth_estimation/depth/models/decode_heads/dpt_head.py``, from the
Monocular-Depth-Estimation-Toolbox), and follows ``VPDDepthHead`` for the
mmseg side (ground truth in ``gt_depth_map``, loss on the GT resolution).
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.decode_heads.dpt_head import (FeatureFusionBlock,
                                                ReassembleBlocks)
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, SampleList
from torch import Tensor

READOUT_TYPES = ('ignore', 'add', 'project')
DEPTH_ACTIVATIONS = ('relu', 'sigmoid')


@MODELS.register_module()
class DPTDepthHead(BaseDecodeHead):
    """DPT depth head ("Vision Transformers for Dense Prediction",
    arXiv 2103.13413) for a ViT backbone's four same-stride outputs.

    The four maps (each optionally with its cls token) are reassembled into a
    pyramid at 4x, 2x, 1x and 1/2x their resolution, projected to
    ``channels``, fused top-down by residual fusion blocks (each upsamples
    2x) and turned into one depth channel by the official ``HeadDepth``
    (conv, 2x upsample, conv, ReLU, 1x1 conv). With stride-16 inputs the
    depth comes out at the input resolution (for even token grids, as the
    recipe's 416x544 and 480x640; odd ones come out a little larger, as in
    DPT), and the loss and the prediction resize it to the ground truth and
    the input.

    Depth output (``depth_act``):

    - ``'relu'`` (default): ``relu(x) + min_depth``, what the official DPT
      depth head does (the toolbox's ``scale_up=False``). At test time the
      prediction is clamped to ``[min_depth, max_depth]``, as the official
      depther's ``encode_decode`` does.
    - ``'sigmoid'``: ``sigmoid(x) * max_depth``, mmseg's ``VPDDepthHead``
      style (the toolbox's ``scale_up=True``); clamped the same way.

    Args:
        in_channels (Sequence[int]): Channels of the four backbone outputs;
            all equal to ``embed_dims`` (a ViT). Defaults to 4 x 768.
        channels (int): Width of the fusion stage. Defaults to 256.
        embed_dims (int): Width of the ViT tokens (and cls token).
            Defaults to 768.
        post_process_channels (Sequence[int]): Channels of the four pyramid
            levels after reassembling. Defaults to (96, 192, 384, 768).
        readout_type (str): How the cls token enters each map: ``'ignore'``
            (dropped; plain maps are accepted too), ``'add'`` (added to every
            token) or ``'project'`` (concatenated to every token, then
            Linear + GELU). ``'add'`` and ``'project'`` need
            ``[map, cls_token]`` inputs (``output_cls_token=True`` in the
            backbone). Defaults to ``'ignore'``.
        patch_size (int): Patch size of the backbone. Kept for config
            compatibility with DPT: the pyramid is built relative to the
            inputs' stride, so it does not change the network.
            Defaults to 16.
        expand_channels (bool): Multiply the channels of pyramid level i by
            2**i (on top of ``post_process_channels``). mmseg's and the
            official ``DPTHead`` only widen the convs after the reassemble
            blocks, which then do not fit; here the reassemble blocks are
            widened too. Defaults to False.
        act_cfg (dict): Activation of the fusion blocks and of the conv after
            them. Defaults to ``dict(type='ReLU')``.
        norm_cfg (dict, optional): Norm of the fusion blocks and of the conv
            after them; the official SN-Netv2 config uses none.
            Defaults to None.
        depth_channels (int): Hidden channels of the last conv before the
            depth output (32 in the official ``HeadDepth``). Defaults to 32.
        depth_act (str): ``'relu'`` or ``'sigmoid'``, see above.
            Defaults to ``'relu'``.
        min_depth (float): Smallest predicted depth in metres.
            Defaults to 1e-3.
        max_depth (float): Largest predicted depth in metres (the test-time
            clamp, and the sigmoid's scale). Defaults to 10.0.
        align_corners (bool): ``align_corners`` of the resizes to the ground
            truth and to the input. Defaults to False.
        loss_decode (dict | Sequence[dict]): Loss config(s), each called as
            ``loss(pred, gt)`` on the ground-truth resolution; losses with
            the same ``loss_name`` are summed.
            Defaults to ``dict(type='SiLogLoss')``.
        init_cfg (dict, optional): Initialisation config. Defaults to None
            (PyTorch's default initialisation, as the official head).
    """
    # What the depth estimator and mmseg's inference read from a head.
    num_classes = 1
    out_channels = 1
    input_transform = None
    # No label is ignored in depth regression; mmseg's extra_repr (and so
    # repr(), which the ONNX exporter calls) reads it.
    ignore_index = None

    def __init__(self,
                 in_channels: Sequence[int] = (768, 768, 768, 768),
                 channels: int = 256,
                 embed_dims: int = 768,
                 post_process_channels: Sequence[int] = (96, 192, 384, 768),
                 readout_type: str = 'ignore',
                 patch_size: int = 16,
                 expand_channels: bool = False,
                 act_cfg: ConfigType = dict(type='ReLU'),
                 norm_cfg: Optional[ConfigType] = None,
                 depth_channels: int = 32,
                 depth_act: str = 'relu',
                 min_depth: float = 1e-3,
                 max_depth: float = 10.0,
                 align_corners: bool = False,
                 loss_decode: Union[ConfigType, Sequence[ConfigType]] = dict(
                     type='SiLogLoss'),
                 init_cfg: Optional[ConfigType] = None):
        # BaseDecodeHead.__init__ builds a classifier and segmentation
        # settings a depth head has no use for.
        super(BaseDecodeHead, self).__init__(init_cfg=init_cfg)
        in_channels = list(in_channels)
        post_process_channels = list(post_process_channels)
        if len(in_channels) != 4 or len(post_process_channels) != 4:
            raise ValueError(
                'DPTDepthHead reassembles exactly four backbone outputs; got '
                f'in_channels {in_channels} and post_process_channels '
                f'{post_process_channels}.')
        if any(c != embed_dims for c in in_channels):
            raise ValueError(
                f'DPT expects four ViT outputs of width embed_dims='
                f'{embed_dims}, got in_channels {in_channels}.')
        if readout_type not in READOUT_TYPES:
            raise ValueError(f'readout_type must be one of {READOUT_TYPES}, '
                             f'got {readout_type!r}.')
        if depth_act not in DEPTH_ACTIVATIONS:
            raise ValueError(f'depth_act must be one of {DEPTH_ACTIVATIONS}, '
                             f'got {depth_act!r}.')
        if not 0 < min_depth < max_depth:
            raise ValueError('Need 0 < min_depth < max_depth, got '
                             f'{min_depth} and {max_depth}.')
        self.in_channels = in_channels
        self.channels = channels
        self.embed_dims = embed_dims
        self.readout_type = readout_type
        self.patch_size = patch_size
        self.expand_channels = expand_channels
        self.depth_act = depth_act
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.align_corners = align_corners

        self.post_process_channels = [
            c * 2**i if expand_channels else c
            for i, c in enumerate(post_process_channels)
        ]
        self.reassemble_blocks = ReassembleBlocks(
            embed_dims, self.post_process_channels, readout_type, patch_size)
        self.convs = nn.ModuleList([
            ConvModule(c, channels, kernel_size=3, padding=1, act_cfg=None,
                       bias=False) for c in self.post_process_channels
        ])
        self.fusion_blocks = nn.ModuleList([
            FeatureFusionBlock(channels, act_cfg, norm_cfg)
            for _ in self.post_process_channels
        ])
        # The coarsest level has nothing to fuse with.
        self.fusion_blocks[0].res_conv_unit1 = None
        self.project = ConvModule(
            channels, channels, kernel_size=3, padding=1, norm_cfg=norm_cfg,
            act_cfg=act_cfg)
        self.conv_depth = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True),
            nn.Conv2d(channels // 2, depth_channels, kernel_size=3,
                      padding=1),
            nn.ReLU(),
            nn.Conv2d(depth_channels, 1, kernel_size=1),
        )

        if isinstance(loss_decode, dict):
            self.loss_decode = MODELS.build(loss_decode)
        elif isinstance(loss_decode, (list, tuple)):
            self.loss_decode = nn.ModuleList(
                [MODELS.build(loss) for loss in loss_decode])
        else:
            raise TypeError('loss_decode must be a dict or a sequence of '
                            f'dicts, got {type(loss_decode).__name__}.')

    def _as_pair(self, x) -> list:
        """``[map, cls_token]`` for mmseg's ReassembleBlocks, which always
        unpacks two items."""
        if isinstance(x, (list, tuple)):
            if len(x) != 2:
                raise ValueError('Each backbone output must be a map or a '
                                 f'[map, cls_token] pair, got {len(x)} '
                                 'items.')
            return list(x)
        if self.readout_type != 'ignore':
            raise ValueError(
                f'readout_type={self.readout_type!r} needs the cls tokens: '
                'set output_cls_token=True in the backbone, or use '
                "readout_type='ignore'.")
        return [x, None]

    def forward(self, inputs: Sequence) -> Tensor:
        """Depth (B, 1, H, W) from four maps or [map, cls_token] pairs."""
        if len(inputs) != 4:
            raise ValueError(
                f'DPTDepthHead needs four backbone outputs, got '
                f'{len(inputs)}: give the backbone four out_indices.')
        x = self.reassemble_blocks([self._as_pair(x) for x in inputs])
        x = [conv(feature) for conv, feature in zip(self.convs, x)]
        out = self.fusion_blocks[0](x[-1])
        for i in range(1, len(self.fusion_blocks)):
            out = self.fusion_blocks[i](out, x[-(i + 1)])
        out = self.conv_depth(self.project(out))
        if self.depth_act == 'relu':
            return torch.relu(out) + self.min_depth
        return torch.sigmoid(out) * self.max_depth

    def _stack_batch_gt(self, batch_data_samples: SampleList) -> Tensor:
        return torch.stack(
            [sample.gt_depth_map.data for sample in batch_data_samples])

    def loss_by_feat(self, pred_depth_map: Tensor,
                     batch_data_samples: SampleList) -> dict:
        """Losses of a predicted depth batch against ``gt_depth_map``.

        The prediction is resized to the ground truth, so that the loss sees
        every labelled pixel (the ground truth is not downsampled).

        Args:
            pred_depth_map (Tensor): (B, 1, h, w) from :meth:`forward`.
            batch_data_samples (list[SegDataSample]): With ``gt_depth_map``.

        Returns:
            dict[str, Tensor]: One entry per ``loss_name``.
        """
        gt_depth_map = self._stack_batch_gt(batch_data_samples)
        pred_depth_map = resize(
            pred_depth_map,
            size=gt_depth_map.shape[2:],
            mode='bilinear',
            align_corners=self.align_corners)
        losses_decode = self.loss_decode if isinstance(
            self.loss_decode, nn.ModuleList) else [self.loss_decode]
        loss = dict()
        for loss_decode in losses_decode:
            value = loss_decode(pred_depth_map, gt_depth_map)
            name = loss_decode.loss_name
            loss[name] = loss[name] + value if name in loss else value
        return loss

    def predict_by_feat(self, pred_depth_map: Tensor,
                        batch_img_metas: List[dict]) -> Tensor:
        """Clamp to ``[min_depth, max_depth]`` (the official test-time
        clamp; it keeps the ReLU output below the depth range) and resize to
        the network input (the padded or the sliding-window size).

        Args:
            pred_depth_map (Tensor): (B, 1, h, w) from :meth:`forward`.
            batch_img_metas (list[dict]): Image metas; ``img_shape`` or
                ``pad_shape`` of the first gives the size.

        Returns:
            Tensor: (B, 1, H, W) depth in metres.
        """
        pred_depth_map = pred_depth_map.clamp(self.min_depth, self.max_depth)
        return super().predict_by_feat(pred_depth_map, batch_img_metas)
