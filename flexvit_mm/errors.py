"""The one error base of flexvit-mm.

Every error that a user can cause and fix (a bad flag, a file that does not
fit, a dataset in the wrong layout) derives from :class:`FlexvitError`, so
the tools turn all of them, in one place (:func:`flexvit_mm.cli.run`), into
their message and exit status 2. Subclasses also derive from the builtin
exception a caller would expect (``ValueError``, ``FileNotFoundError``), so
``except ValueError`` keeps working.
"""


class FlexvitError(Exception):
    """A problem the user can fix; the message names the problem and the
    fix.

    Attributes:
        exit_code (int): The exit status of a tool that ends with it.
    """
    exit_code = 2


class CheckpointError(FlexvitError, ValueError):
    """A checkpoint file that cannot be used as asked: unreadable,
    untrusted, or not fitting the model."""


class UnreadableCheckpointError(CheckpointError):
    """The file is empty, truncated or not a checkpoint at all."""


class UntrustedCheckpointError(CheckpointError):
    """The checkpoint's pickle needs a global outside the allowlist; loading
    it could run code."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's weights do not fit the model (missing, unexpected or
    mis-shaped keys)."""
