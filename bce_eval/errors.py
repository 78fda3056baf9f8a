"""The named errors a user can cause with input files, and how a path is shown in a message."""

from __future__ import annotations

from pathlib import Path


def printable(path: Path | str) -> str:
    """The path as it is, or escaped as repr() does if it holds a newline, another control
    character or a byte that is not text: an error message must stay one line, and a terminal
    must not act on what a file name holds."""
    text = str(path)
    return text if text.isprintable() else repr(text)


class InputError(Exception):
    """A file that cannot be evaluated: unreadable, unpaired, wrong shape or out of range."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(problem.split())  # decoders' messages may span lines
        super().__init__(f"{printable(path)}: {self.problem}")
