from .layers import LayerNorm2d

__all__ = ['LayerNorm2d']
