"""The one exception type the command line turns into a one-line message."""


class TailganError(ValueError):
    """A problem with the user's input (a path, a value, a file) that the user can fix.

    The message names the offending value and the fix; the CLI prints it as ``error: ...``
    and exits with status 2 instead of showing a traceback.
    """
