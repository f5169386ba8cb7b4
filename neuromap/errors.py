"""The one exception type that reaches the user as a one-line message."""


class NeuromapError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    The message names the file (and the record or line where it applies).
    """
