"""Normalisation layers registered in mmengine's root ``MODELS``."""
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS


@MODELS.register_module()
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an ``(N, C, H, W)`` map.

    ViTDet's simple feature pyramid normalises its conv maps this way. It
    builds through ``mmcv.cnn.build_norm_layer`` like BN or GN, so any
    module with a ``norm_cfg`` can use it: ``norm_cfg=dict(type='LayerNorm2d')``.

    Args:
        num_channels (int): Number of channels C.
        eps (float): Added to the variance. Defaults to 1e-6.
        elementwise_affine (bool): Learn a per-channel scale and shift.
            Defaults to True.
    """
    _abbr_ = 'ln'

    def __init__(self, num_channels, eps=1e-6, elementwise_affine=True):
        super().__init__(num_channels, eps=eps,
                         elementwise_affine=elementwise_affine)
        self.num_channels = num_channels

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError(
                f'LayerNorm2d expects an (N, C, H, W) map, got shape '
                f'{tuple(x.shape)}.')
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2).contiguous()
