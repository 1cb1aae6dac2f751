"""Least-squares initialisation of the stitching layers before training."""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ...models.stitching.selection import find_stitched_backbone
from ..rng import isolated_rng


@HOOKS.register_module()
class StitchingInitHook(Hook):
    """Fit every stitching layer by least squares on training images.

    Runs once, before the first training iteration, and is skipped when the
    run resumed or loaded a checkpoint (``--resume``, ``load_from``): the
    stitching layers then come from that checkpoint. The images pass
    through the training pipeline, whose random transforms draw from the
    global random streams; the fit runs in :func:`isolated_rng`, so the
    training that follows draws exactly what it would without this hook
    (which is what a resumed run, skipping it, does).

    Args:
        num_images (int): Training images (per rank) whose block features
            are fitted: 100 for classification, 50 crops for segmentation in
            the official recipes. Every rank uses its own images and the
            normal equations are summed over ranks.
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self, num_images: int = 100):
        if num_images < 1:
            raise ValueError(f'num_images must be >= 1, got {num_images}.')
        self.num_images = num_images

    def _batches(self, runner):
        """Preprocessed batches of training images, spread evenly over the
        dataset. Read from the dataset itself, not through the training
        dataloader: iterating (and abandoning) that would consume, or with
        an InfiniteSampler even close, the sampler the training loop uses.
        """
        model = runner.model.module if hasattr(runner.model, 'module') \
            else runner.model
        loader = runner.train_dataloader
        dataset = loader.dataset
        count = min(self.num_images, len(dataset))
        indices = sorted({
            round(i * (len(dataset) - 1) / max(count - 1, 1))
            for i in range(count)
        })
        batch_size = loader.batch_size or 2
        for start in range(0, len(indices), batch_size):
            samples = [dataset[i] for i in indices[start:start + batch_size]]
            data = loader.collate_fn(samples)
            yield model.data_preprocessor(data, True)['inputs']

    def before_train(self, runner) -> None:
        if runner._has_loaded:
            print_log(
                'StitchingInitHook: a checkpoint was loaded, keeping its '
                'stitching layers.', logger='current')
            return
        backbone = find_stitched_backbone(runner.model)
        with isolated_rng():
            used = backbone.fit_stitching_layers(self._batches(runner))
        print_log(
            f'StitchingInitHook: fitted {len(backbone.space.layer_fits())} '
            f'stitching layers by least squares on {used} images per rank.',
            logger='current')
