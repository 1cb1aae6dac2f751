"""Install-time fix for PyPI's CUDA torchvision wheel on a CPU build of torch.

PyPI's ``torchvision==0.28.0`` is built against CUDA. With a CPU torch its
C extension (``torchvision/_C.so``) cannot load, because it links
``libtorch_cuda.so``; torchvision tolerates that everywhere except in
``_meta_registrations.py``, whose fake kernels for ``torchvision::nms`` and
``torchvision::qnms`` are registered without checking ``_has_ops()``. So
``import torchvision`` raises ``RuntimeError: operator torchvision::nms does
not exist``, and with it timm, mmpretrain, and mmseg/mmdet (which guard
``import timm`` only against ImportError).

The fix guards those two decorators with the same ``_has_ops()`` check that
torchvision uses for every other registration in that file. It is applied
only when the C extension cannot load, never to a working torchvision, and
applying it twice changes nothing. Only torchvision's own C++ ops (nms,
image decoding) stay unavailable; the OpenMMLab stack uses mmcv's ops.

Run it as a file, not with ``-m``: importing the ``flexvit_mm`` package
imports torchvision, which is what is broken. It uses the standard library
only::

    python flexvit_mm/compat/torchvision_fix.py          # fix if needed
    python flexvit_mm/compat/torchvision_fix.py --check  # exit 1 if needed
"""
import argparse
import glob
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

MARKER = '# flexvit-mm: guarded, see flexvit_mm/compat/torchvision_fix.py'
_UNGUARDED = re.compile(
    r'^@torch\.library\.register_fake\("torchvision::(nms|qnms)"\)[ \t]*$',
    re.MULTILINE)
_GUARDED = re.compile(
    r'^@\(torch\.library\.register_fake\("torchvision::(nms|qnms)"\) '
    r'if torchvision\.extension\._has_ops\(\) else \(lambda fn: fn\)\)  ' +
    re.escape(MARKER) + r'$', re.MULTILINE)


def patch_source(text):
    """Return ``_meta_registrations.py`` source with the nms/qnms guard."""
    return _UNGUARDED.sub(
        lambda m: f'@(torch.library.register_fake("torchvision::{m[1]}") '
        f'if torchvision.extension._has_ops() else (lambda fn: fn))  {MARKER}',
        text)


def unpatch_source(text):
    """Inverse of :func:`patch_source` (used by the tests and to undo)."""
    return _GUARDED.sub(
        lambda m: f'@torch.library.register_fake("torchvision::{m[1]}")',
        text)


def torchvision_dir():
    """The installed torchvision package folder, found without importing
    it (importing is what fails)."""
    spec = importlib.util.find_spec('torchvision')
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def extension_loads(package_dir):
    """Whether torchvision's C extension loads with the installed torch.

    Checked in a child process so that a failed load leaves no trace here.
    """
    libs = glob.glob(osp.join(package_dir, '_C*.so')) + glob.glob(
        osp.join(package_dir, '_C*.pyd'))
    if not libs:
        return False
    probe = 'import sys, torch; torch.ops.load_library(sys.argv[1])'
    result = subprocess.run([sys.executable, '-c', probe, libs[0]],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return result.returncode == 0


def _meta_file(package_dir):
    return osp.join(package_dir, '_meta_registrations.py')


def needs_fix(package_dir=None):
    """True when torchvision's ops cannot load and the guard is missing."""
    package_dir = package_dir or torchvision_dir()
    if package_dir is None or not osp.exists(_meta_file(package_dir)):
        return False
    with open(_meta_file(package_dir)) as f:
        if not _UNGUARDED.search(f.read()):
            return False
    return not extension_loads(package_dir)


def apply(package_dir=None):
    """Apply the fix where it is needed.

    Args:
        package_dir (str, optional): torchvision's package folder. Defaults
            to the installed one.

    Returns:
        str: what happened, one of ``'patched'``, ``'already patched'``,
        ``'not needed'`` (the extension loads) or ``'not installed'``.
    """
    package_dir = package_dir or torchvision_dir()
    if package_dir is None or not osp.exists(_meta_file(package_dir)):
        return 'not installed'
    path = _meta_file(package_dir)
    with open(path) as f:
        text = f.read()
    if not _UNGUARDED.search(text):
        return 'already patched' if MARKER in text else 'not needed'
    if extension_loads(package_dir):
        return 'not needed'
    with open(path, 'w') as f:
        f.write(patch_source(text))
    # Drop the stale bytecode so the next import compiles the new source.
    for pyc in glob.glob(
            osp.join(package_dir, '__pycache__', '_meta_registrations.*')):
        try:
            os.remove(pyc)
        except OSError:
            pass
    return 'patched'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='only report; exit 1 if the fix is needed')
    parser.add_argument('--torchvision-dir', default=None,
                        help='torchvision package folder (default: the '
                        'installed one)')
    args = parser.parse_args(argv)
    if args.check:
        needed = needs_fix(args.torchvision_dir)
        print('torchvision fix needed' if needed else
              'torchvision fix not needed')
        return 1 if needed else 0
    print(f'torchvision: {apply(args.torchvision_dir)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
