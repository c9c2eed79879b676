"""One exception type for every failure a user can cause; the CLI turns it into a one-line reason."""


class DdpmEdgeError(Exception):
    """A user-facing failure: bad input, a missing or corrupt file, an unsupported engine.

    `exit_code` follows sysexits loosely: 2 for bad arguments/input, 3 for a missing dependency,
    4 for a failed validation.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class MissingDependency(DdpmEdgeError):
    exit_code = 3


class ValidationFailed(DdpmEdgeError):
    exit_code = 4


class Cancelled(DdpmEdgeError):
    """Raised when a progress callback asks to stop."""

    exit_code = 130
