from .chained_vit import ChainedViT
from .shvit import SHViT
from .snnetv2 import SNNetv2

__all__ = ['ChainedViT', 'SHViT', 'SNNetv2']
