"""The one exception type that carries a user-facing message.

Anything raised as RuncCkptError is reported as a single runc-format error
line (see runclog) with exit code 1; everything else is an internal error,
reported the same way but never with a traceback.
"""


class RuncCkptError(Exception):
    """A failure to report to the caller in one line."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
