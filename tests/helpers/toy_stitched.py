"""Test doubles for the stitch sweep: a toy stitched backbone, a metric
sensitive to every predicted score, a transform that counts dataset reads,
and a model wrapper standing in for DDP.

Importing this module registers them in mmengine's root registries, where
mmpretrain (and mmseg, mmdet) configs find them.
"""
import collections

import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModule
from mmengine.registry import METRICS, MODEL_WRAPPERS, MODELS, TRANSFORMS
from torch import nn

# img_path -> how many times the test pipeline loaded it (num_workers=0).
READS = collections.Counter()


@MODELS.register_module(force=True)
class ToyStitchedBackbone(BaseModule):
    """A conv net following the stitched-backbone contract: stitch ``k``
    runs the stem and the first ``k`` of ``num_blocks`` conv blocks."""

    def __init__(self, channels=8, num_blocks=3, init_cfg=None):
        super().__init__(init_cfg)
        self.stem = nn.Conv2d(3, channels, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
            for _ in range(num_blocks))
        self._stitch_id = num_blocks

    @property
    def stitch_ids(self):
        return tuple(range(len(self.blocks) + 1))

    @property
    def stitch_id(self):
        return self._stitch_id

    def set_stitch(self, stitch_id):
        if isinstance(stitch_id, bool) or stitch_id not in self.stitch_ids:
            raise ValueError(f'Unknown stitch id {stitch_id!r}: valid ids '
                             f'are {list(self.stitch_ids)}.')
        self._stitch_id = int(stitch_id)

    def describe_stitch(self, stitch_id):
        if stitch_id not in self.stitch_ids:
            raise ValueError(f'Unknown stitch id {stitch_id!r}.')
        return dict(id=stitch_id, kind='anchor' if stitch_id in (0, len(
            self.blocks)) else 'SL', route=f'T[0-{stitch_id}]',
                    params=sum(p.numel() for p in self.stem.parameters()) +
                    sum(p.numel() for b in self.blocks[:stitch_id]
                        for p in b.parameters()))

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks[:self._stitch_id]:
            x = x + block(x)
        return (x, )


@METRICS.register_module(force=True)
class ScoreChecksum(BaseMetric):
    """A metric that changes with every bit of every predicted score: the
    sample-weighted sum of the class-weighted scores, and the sorted sample
    indices seen."""
    default_prefix = 'check'

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            score = sample['pred_score'].double()
            weights = torch.arange(1, score.numel() + 1, dtype=torch.float64)
            self.results.append(
                (sample['sample_idx'], float((score * weights).sum())))

    def compute_metrics(self, results):
        results = sorted(results)
        return dict(
            checksum=sum((idx + 1) * value for idx, value in results),
            num_samples=len(results),
            first_idx=results[0][0],
            last_idx=results[-1][0])


@TRANSFORMS.register_module(force=True)
class CountReads:
    """Counts every dataset item the pipeline produces."""

    def __call__(self, results):
        READS[results['img_path']] += 1
        return results


@MODEL_WRAPPERS.register_module(force=True)
class ToyModelWrapper(nn.Module):
    """Stands in for MMDistributedDataParallel: keeps the model in
    ``.module`` and is registered as a model wrapper."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def test_step(self, data):
        return self.module.test_step(data)
