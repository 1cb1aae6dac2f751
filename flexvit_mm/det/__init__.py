"""MMDet-specific modules (registered in mmdet's registries): the ViTDet-style
simple feature pyramid for plain (stitched) ViTs."""
from .simple_fpn import SimpleFPN

__all__ = ['SimpleFPN']
