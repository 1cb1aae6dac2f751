from .backbones import SNNetv2
from .layers import LayerNorm2d

__all__ = ['LayerNorm2d', 'SNNetv2']
