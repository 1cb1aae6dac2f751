"""Learnable generated datasets in the exact layouts of the real ones.

The tests, the demo and the CPU-scale reproductions use them; the loading
code that reads them is the toolboxes' own, unchanged.
"""
from .classification import make_imagenet
from .depth import make_nyu
from .detection import COCO_CATEGORIES, make_coco
from .semantic import make_ade20k, make_coco_stuff10k

# kind -> (generator, where the real configs expect the data root)
GENERATORS = {
    'ade20k': make_ade20k,
    'coco_stuff10k': make_coco_stuff10k,
    'nyu': make_nyu,
    'coco': make_coco,
    'imagenet': make_imagenet,
}


def make_synthetic(kind, out, **kwargs):
    """Generate one dataset.

    Args:
        kind (str): One of ``ade20k``, ``coco_stuff10k``, ``nyu``, ``coco``,
            ``imagenet``.
        out (str): Output folder (for ADE20K the parent of
            ``ADEChallengeData2016``, as in ``data/ade``).
        **kwargs: Passed to the generator: ``num_train``, ``num_val``,
            ``img_size``, ``seed`` and, except for NYU, ``num_classes``.

    Returns:
        str: The data root a config's ``data_root`` should point at.
    """
    if kind not in GENERATORS:
        raise ValueError(f'Unknown dataset kind {kind!r}; choose one of '
                         f'{sorted(GENERATORS)}.')
    return GENERATORS[kind](out, **kwargs)


__all__ = [
    'make_synthetic', 'make_ade20k', 'make_coco_stuff10k', 'make_nyu',
    'make_coco', 'make_imagenet', 'COCO_CATEGORIES', 'GENERATORS'
]
