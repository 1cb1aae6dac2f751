from .snnetv2 import SNNetv2

__all__ = ['SNNetv2']
