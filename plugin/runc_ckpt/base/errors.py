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


class PassToRunc(Exception):
    """Hand the whole call, unchanged, to the real runc: it is runc's to refuse (a usage
    error in a call that uses none of our flags), so runc's own words and exit code reach
    the caller."""
