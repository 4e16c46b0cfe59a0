"""One error type for everything a user can fix: a sentence saying what is wrong, and the fix."""
from __future__ import annotations


class LabError(Exception):
    def __init__(self, message: str, fix: str = "", exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message
