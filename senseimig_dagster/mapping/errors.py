"""Map errors name the file, the line and the fix; they carry names and codes only, never row values."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MapError:
    path: str
    line: int  # 1-based; 0 when the problem is the file as a whole
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message} (fix: {self.fix})"


class MapInvalid(ValueError):
    """Raised by callers that need a valid map; ``errors`` holds every problem found."""

    def __init__(self, errors: list[MapError]):
        self.errors = errors
        super().__init__(f"{len(errors)} problem(s) in the field map:\n" + "\n".join(map(str, errors)))
