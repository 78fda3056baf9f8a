"""The named errors a user can cause. The library raises them; only the command turns them into
one line on stderr and exit code 2. Anything else that escapes is a bug and keeps its traceback."""

from __future__ import annotations

from pathlib import Path

# The exit codes of the command, a contract for CI: every pair evaluated and every gate passed;
# a gate failed; a usage or input error (it takes precedence over a failed gate).
EXIT_OK, EXIT_GATE, EXIT_INPUT = 0, 1, 2


def printable(path: Path | str) -> str:
    """The path as it is, or escaped as repr() does if it holds a newline, another control
    character or a byte that is not text: an error message must stay one line, and a terminal
    must not act on what a file name holds."""
    text = str(path)
    return text if text.isprintable() else repr(text)


class BceEvalError(Exception):
    """Base of every error bce-eval raises for something the user gave it."""


class OptionError(BceEvalError, ValueError):
    """An option's value cannot be used: ``--eps 0.7``, ``--shard 3/2``, a negative threshold."""

    def __init__(self, option: str, problem: str) -> None:
        self.option, self.problem = option, problem
        super().__init__(f"{option}: {problem}")


class InputError(BceEvalError):
    """A file that cannot be evaluated: unreadable, unpaired, wrong shape or out of range."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(problem.split())  # decoders' messages may span lines
        super().__init__(f"{printable(path)}: {self.problem}")


class ReportError(BceEvalError):
    """A report cannot be written, or a report given to read is not one bce-eval can use."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


class BackendError(BceEvalError):
    """The chosen backend or device cannot be used here (not installed, no such device)."""


class ValueOutOfRange(BceEvalError, ValueError):
    """A target or prediction value that BCE is not defined for (outside [0, 1], NaN, inf)."""

    def __init__(self, which: str, index: tuple[int, ...], value: float, expected: str) -> None:
        self.which = which
        self.index = index
        self.value = value
        self.expected = expected
        where = str(index[0]) if len(index) == 1 else str(index) if index else "()"
        super().__init__(f"{which} value {value!r} at index {where} is not {expected}")
