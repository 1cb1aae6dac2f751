"""Learnable generated datasets in the exact layouts of the real ones.

The tests, the demo and the CPU-scale reproductions use them; the loading
code that reads them is the toolboxes' own, unchanged.
"""
import os.path as osp

from .classification import make_imagenet
from .depth import make_nyu
from .detection import COCO_CATEGORIES, make_coco
from .options import SyntheticOptionError, check_options
from .output import DatasetOutputError, read_marker, write_dataset
from .semantic import make_ade20k, make_coco_stuff10k

GENERATORS = {
    'ade20k': make_ade20k,
    'coco_stuff10k': make_coco_stuff10k,
    'nyu': make_nyu,
    'coco': make_coco,
    'imagenet': make_imagenet,
}
# Kinds whose generator writes the dataset root into a subfolder of `out`
# (as data/ade/ADEChallengeData2016); the others write it at `out`.
ROOT_SUBFOLDER = {'ade20k': 'ADEChallengeData2016'}


def dataset_root(kind, out):
    """The data root that ``make_synthetic(kind, out)`` writes."""
    subfolder = ROOT_SUBFOLDER.get(kind)
    return osp.join(out, subfolder) if subfolder else out


def make_synthetic(kind, out, force=False, **kwargs):
    """Generate one dataset, all at once.

    The dataset is generated into a hidden staging folder next to its root
    and moved into place when complete: a failure or Ctrl-C leaves nothing
    behind. A root that already holds files is refused, unless it holds a
    dataset generated here and ``force`` is set.

    Args:
        kind (str): One of ``ade20k``, ``coco_stuff10k``, ``nyu``, ``coco``,
            ``imagenet``.
        out (str): Output folder (for ADE20K the parent of
            ``ADEChallengeData2016``, as in ``data/ade``).
        force (bool): Replace a dataset generated here earlier. Defaults to
            False.
        **kwargs: Passed to the generator: ``num_train``, ``num_val``,
            ``img_size``, ``seed`` and, except for NYU, ``num_classes``.

    Returns:
        str: The data root a config's ``data_root`` should point at.

    Raises:
        SyntheticOptionError: For an unknown kind or an option out of range.
        DatasetOutputError: If the root may not be written (see
            :func:`~flexvit_mm.datasets.synthetic.output.check_output`).
    """
    if kind not in GENERATORS:
        raise SyntheticOptionError('kind', kind,
                                   f'choose one of {sorted(GENERATORS)}')
    check_options(kind, **kwargs)
    root = dataset_root(kind, out)

    def generate(staging):
        return GENERATORS[kind](
            staging if kind in ROOT_SUBFOLDER else osp.join(
                staging, 'dataset'), **kwargs)

    options = {k: list(v) if isinstance(v, tuple) else v
               for k, v in kwargs.items()}
    return write_dataset(generate, root, dict(kind=kind, options=options),
                         force=force)


__all__ = [
    'make_synthetic', 'make_ade20k', 'make_coco_stuff10k', 'make_nyu',
    'make_coco', 'make_imagenet', 'COCO_CATEGORIES', 'GENERATORS',
    'check_options', 'SyntheticOptionError', 'DatasetOutputError',
    'read_marker', 'dataset_root'
]
