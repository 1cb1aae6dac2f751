from . import heads  # noqa: F401  (registers SHViTClsHead in mmpretrain)
from .backbones import ChainedViT, SHViT, SNNetv2
from .layers import LayerNorm2d

__all__ = ['ChainedViT', 'LayerNorm2d', 'SHViT', 'SNNetv2']
