"""MMDet-specific modules (registered in mmdet's registries): the ViTDet-style
simple feature pyramid for plain (stitched) ViTs and the SHViT feature
pyramid (transposed-conv or stem high-resolution levels)."""
from .shvit_fpn import SHViTFPN
from .simple_fpn import SimpleFPN

__all__ = ['SimpleFPN', 'SHViTFPN']
