"""Library side of the command-line tools in ``tools/``.

The scripts stay thin: each calls :func:`run` with one of these mains, so
the logic can be tested and extended here.
"""
import sys

from .common import UserInputError


def run(main, argv=None):
    """Run a tool's main; expected user errors end with their message and
    exit status 2 instead of a traceback."""
    from ..datasets import DatasetLayoutError
    from ..models.backbones.anchors import MissingWeightsError
    from ..models.stitching.convert import IncompatibleCheckpointError
    try:
        main(argv)
    except (UserInputError, DatasetLayoutError, IncompatibleCheckpointError,
            MissingWeightsError) as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(2)


__all__ = ['run', 'UserInputError']
