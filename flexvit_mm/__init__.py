"""flexvit-mm: flexible vision backbones for the OpenMMLab 2.x toolboxes.

``import flexvit_mm`` (or ``custom_imports=dict(imports=['flexvit_mm'])`` in
a config) applies the compatibility fixes of :mod:`flexvit_mm.compat` and
registers the package's toolbox-neutral modules in mmengine's root
registries, where mmseg, mmdet and mmpretrain configs all find them.
"""
from . import compat
from .version import __version__

compat.apply_all()

from . import engine, models  # noqa: E402,F401  (registers the modules)

__all__ = ['__version__']
