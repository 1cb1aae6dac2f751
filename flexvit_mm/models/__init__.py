from . import heads  # noqa: F401  (registers SHViTClsHead in mmpretrain)
from .backbones import SHViT, SNNetv2
from .layers import LayerNorm2d

__all__ = ['LayerNorm2d', 'SHViT', 'SNNetv2']
