"""The one exception type the command line turns into a one-line message."""


class TailganError(ValueError):
    """A problem with the user's input (a path, a value, a file) that the user can fix.

    The message names the offending value and the fix; the CLI prints it as ``error: ...``
    and exits with status 2 instead of showing a traceback.
    """


class Interrupted(TailganError):
    """Training stopped on a signal after writing its checkpoint; the CLI exits with ``128 + signal``."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
