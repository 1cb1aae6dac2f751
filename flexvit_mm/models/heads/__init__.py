"""Heads registered in a toolbox's own registry (mmpretrain here); a missing
toolbox only disables its heads."""
try:
    from .shvit_head import SHViTClsHead
except ImportError as error:  # pragma: no cover - mmpretrain not installed
    if 'mmpretrain' not in str(error):
        raise
    __all__ = []
else:
    __all__ = ['SHViTClsHead']
