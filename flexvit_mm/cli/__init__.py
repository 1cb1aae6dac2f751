"""Library side of the command-line tools in ``tools/``.

The scripts stay thin: each calls :func:`run` with one of these mains, so
the logic can be tested and extended here.
"""
import sys

from ..errors import FlexvitError
from .common import UserInputError
from .config_errors import config_error


def _exit(error):
    print(f'error: {error}', file=sys.stderr)
    sys.exit(error.exit_code)


def run(main, argv=None):
    """Run a tool's main; expected user errors end with their message and
    their exit status (2) instead of a traceback: every
    :class:`FlexvitError`, and the mistakes in a config that mmengine finds
    while building it (:func:`config_error`: an unknown type, an argument a
    module does not take)."""
    try:
        main(argv)
    except FlexvitError as error:
        _exit(error)
    except (KeyError, TypeError, ValueError) as error:
        user_error = config_error(error)
        if user_error is None:
            raise
        _exit(user_error)


__all__ = ['run', 'UserInputError']
