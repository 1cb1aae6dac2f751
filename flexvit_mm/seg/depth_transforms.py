"""Training transforms of the official NYUv2 depth recipe that mmseg 1.x
lacks (Monocular-Depth-Estimation-Toolbox's ``NYUCrop`` and ``ColorAug``,
as used by ziplab/SN-Netv2 ``depth_estimation``)."""
from typing import Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class NYUValidCrop(BaseTransform):
    """Crop NYUv2 images and depth maps to the region the Kinect depth
    covers (the white border of the 480x640 frames has no depth).

    Crops the image and every map in ``seg_fields`` (``gt_depth_map``) to
    rows ``top:bottom`` and columns ``left:right``; the default is the
    official ``NYUCrop``'s ``[45:472, 43:608]`` (427x565).

    Args:
        box (Sequence[int]): ``(top, bottom, left, right)``, end exclusive.
            Defaults to (45, 472, 43, 608).
    """

    def __init__(self, box: Sequence[int] = (45, 472, 43, 608)):
        top, bottom, left, right = box
        if not (0 <= top < bottom and 0 <= left < right):
            raise ValueError(f'box {tuple(box)} must be (top, bottom, left, '
                             'right) with top < bottom and left < right.')
        self.box = tuple(box)

    def transform(self, results: dict) -> dict:
        top, bottom, left, right = self.box
        height, width = results['img'].shape[:2]
        if height < bottom or width < right:
            raise ValueError(
                f'NYUValidCrop{self.box} needs images of at least '
                f'{bottom}x{right} (NYUv2 frames are 480x640), got '
                f'{height}x{width} for {results.get("img_path")}.')
        results['img'] = results['img'][top:bottom, left:right]
        for key in results.get('seg_fields', []):
            results[key] = results[key][top:bottom, left:right]
        results['img_shape'] = results['img'].shape[:2]
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(box={self.box})'


@TRANSFORMS.register_module()
class DepthColorAug(BaseTransform):
    """The official depth recipe's colour augmentation: with probability
    ``prob``, a random gamma, a random brightness factor and a random factor
    per colour channel, clipped to [0, 255].

    The official toolbox applies the gamma to the raw 0-255 values
    (``img ** gamma``), which for gamma != 1 also rescales the image
    strongly (255 ** 1.1 saturates); BTS/AdaBins, where it comes from, apply
    it to [0, 1] values. ``normalized_gamma`` chooses.

    Args:
        prob (float): Probability of augmenting an image. Defaults to 0.5.
        gamma_range (Sequence[float]): Range of the gamma.
            Defaults to (0.9, 1.1).
        brightness_range (Sequence[float]): Range of the brightness factor.
            Defaults to (0.75, 1.25).
        color_range (Sequence[float]): Range of the per-channel factors.
            Defaults to (0.9, 1.1).
        normalized_gamma (bool): Apply the gamma to ``img / 255`` (BTS)
            instead of the raw values (official toolbox). Defaults to False.
    """

    def __init__(self,
                 prob: float = 0.5,
                 gamma_range: Sequence[float] = (0.9, 1.1),
                 brightness_range: Sequence[float] = (0.75, 1.25),
                 color_range: Sequence[float] = (0.9, 1.1),
                 normalized_gamma: bool = False):
        if not 0 <= prob <= 1:
            raise ValueError(f'prob must be in [0, 1], got {prob}.')
        self.prob = prob
        self.gamma_range = tuple(gamma_range)
        self.brightness_range = tuple(brightness_range)
        self.color_range = tuple(color_range)
        self.normalized_gamma = normalized_gamma

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results['img'].astype(np.float32)
        gamma = np.random.uniform(*sorted(self.gamma_range))
        if self.normalized_gamma:
            img = (img / 255.) ** gamma * 255.
        else:
            img = img ** gamma
        img = img * np.random.uniform(*sorted(self.brightness_range))
        colors = np.random.uniform(*sorted(self.color_range), size=3)
        img = img * colors.astype(np.float32)
        results['img'] = np.clip(img, 0, 255).astype(np.float32)
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(prob={self.prob}, '
                f'gamma_range={self.gamma_range}, '
                f'brightness_range={self.brightness_range}, '
                f'color_range={self.color_range}, '
                f'normalized_gamma={self.normalized_gamma})')
