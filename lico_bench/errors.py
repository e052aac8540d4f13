"""The one error type a user sees.

Every bad input raises :class:`UserError` with a one-line message that says what is wrong
and what to do. The CLI turns it into ``lico-bench: error: <message>`` and exit status 2,
without a traceback.
"""


class UserError(Exception):
    """A problem with the user's input (name, path, option, file). Exit status 2."""

    exit_code = 2

    def __init__(self, message: str):
        # One line, always: a multi-line message would read like a traceback.
        super().__init__(" ".join(str(message).split()))
