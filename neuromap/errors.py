"""The one exception type that reaches the user as a one-line message, and the closed output."""


class NeuromapError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    The message names the file (and the record or line where it applies).
    """


class OutputClosed(Exception):
    """The reader of stdout has gone (`| head`): the run ends quietly with status 141, as SIGPIPE
    ends C tools. Not an OSError, which click would turn into status 1."""


class Terminated(Exception):
    """SIGTERM arrived (raised by the CLI's handler): the run stops at once, status 143."""
