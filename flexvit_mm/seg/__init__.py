"""MMSeg-specific modules (registered in mmseg's registries): the DPT depth
head, fixes for mmseg's depth estimator and depth metric, and the official
NYUv2 depth recipe's training transforms."""
from .depth_estimator import FlipDepthEstimator
from .depth_head import DPTDepthHead
from .depth_metric import SelectableDepthMetric
from .depth_transforms import DepthColorAug, NYUValidCrop

__all__ = [
    'DPTDepthHead', 'DepthColorAug', 'FlipDepthEstimator', 'NYUValidCrop',
    'SelectableDepthMetric'
]
