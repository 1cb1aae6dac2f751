"""Optimizer wrapper constructors, registered in mmengine's root registry."""
from .layer_decay import StitchedLayerDecayOptimWrapperConstructor

__all__ = ['StitchedLayerDecayOptimWrapperConstructor']
