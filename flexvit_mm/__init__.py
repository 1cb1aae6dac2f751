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

# Toolbox-specific modules register in that toolbox's own registries; a
# missing toolbox only disables its part.
try:
    from . import seg  # noqa: F401
except ImportError as error:  # pragma: no cover - mmseg not installed
    if 'mmseg' not in str(error):
        raise
try:
    from . import det  # noqa: F401
except ImportError as error:  # pragma: no cover - mmdet not installed
    if 'mmdet' not in str(error):
        raise

__all__ = ['__version__']
