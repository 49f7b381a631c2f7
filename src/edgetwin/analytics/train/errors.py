"""Why training stopped, with the exit status ``edgetwin train`` gives for it (sysexits.h)."""

from __future__ import annotations

from typing import Final

from edgetwin.core.errors import EdgetwinError

EX_USAGE: Final = 64  # bad options
EX_DATAERR: Final = 65  # the training data is unusable
EX_NOINPUT: Final = 66  # the training data cannot be read
EX_UNAVAILABLE: Final = 69  # the [train] extra is not installed
EX_SOFTWARE: Final = 70  # the model made does not load: a bug
EX_CANTCREAT: Final = 73  # the model cannot be written


class TrainingError(EdgetwinError):
    """Training refused or failed; the message says what to change."""

    def __init__(self, message: str, exit_code: int = EX_DATAERR) -> None:
        super().__init__(message)
        self.exit_code = exit_code
