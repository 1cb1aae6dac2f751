from .shvit import SHViT
from .snnetv2 import SNNetv2

__all__ = ['SHViT', 'SNNetv2']
