"""Guards against hostile input: the memory budget per pair, the boundary around decoders, their
warnings and C libraries' messages, and defensive reading of small list and report files.

A file a user hands bce-eval may be damaged or built to hurt: a 38-byte WebP that claims 13000 x
13000 pixels, a TIFF whose tags make tifffile divide by zero. Whatever a decoder library does with
such a file (raise any exception, run out of memory, warn, print from C) must end as one line
naming the file, and the run must go on with the other pairs.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import stat
import sys
import threading
import warnings
from pathlib import Path

from .errors import InputError, printable

# ---------------------------------------------------------------------------------------------
# The memory budget: bytes one pair may take, computed from the headers before anything is decoded.

# Peak bytes the pipeline holds per value of one image (height x width x channels) while it decodes
# and scores a pair, both files included. Measured with tracemalloc (tests/test_hostile_input.py
# holds the pipeline to these figures): 12.7 on 256x256x3 8-bit pairs, 10.7 on 512x512x3, 179 on
# 16-bit pairs of either size; libspng's own buffers, which tracemalloc does not see, add about 3
# (8-bit) or 6 (16-bit), hence the margin. 8-bit pairs are looked up in tables: the files, their
# verified scanlines, the decoded images and the uint16 pair index that np.bincount widens to
# int64. Every other pair is scored in float64, and pixel_maps keeps about twenty float64 arrays
# of the image's size alive at its peak.
LOOKUP_BYTES_PER_VALUE = 20
FLOAT_BYTES_PER_VALUE = 200
# Without a figure from the system (no /proc/meminfo, no sysconf), this much is taken as available.
ASSUMED_AVAILABLE = 8 << 30
# The share of available memory that all pairs in flight at once may take, together: the rest is
# for the operating system, other programs and the per-image records.
MEMORY_SHARE = 4


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now: MemAvailable on Linux (free memory
    plus the page cache that can be dropped), free physical pages elsewhere; None if unknown."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def default_max_image_bytes(workers: int = 1) -> int:
    """The default budget per pair: a quarter of the memory available now, shared by the pairs
    that ``workers`` processes or threads hold at once. On a machine with 22 GiB available and 2
    workers, 2.75 GiB: a 4096 x 4096 RGB 8-bit pair needs 0.94 GiB, a 1024 x 1024 RGB 16-bit pair
    0.59 GiB, and a 13000 x 13000 RGB 8-bit one (which a 38-byte WebP can claim) 9.4 GiB."""
    available = available_memory() or ASSUMED_AVAILABLE
    return max(1, available // (MEMORY_SHARE * max(1, workers)))


def pair_bytes(values: int, *, lookup: bool) -> int:
    """Peak bytes the pipeline takes for a pair of images of ``values`` values each: ``lookup``
    for two 8-bit images scored by table lookup, otherwise the float64 path."""
    return values * (LOOKUP_BYTES_PER_VALUE if lookup else FLOAT_BYTES_PER_VALUE)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def check_budget(path: Path | str, shape: tuple[int, ...], *, lookup: bool, max_image_bytes: int) -> None:
    """Refuse an image whose pair would take more than max_image_bytes, from its header's shape
    (height, width[, channels]) alone, before a byte of it is decoded."""
    values = math.prod(shape)
    need = pair_bytes(values, lookup=lookup)
    if need > max_image_bytes:
        size = "x".join(map(str, shape))
        raise InputError(
            path,
            f"{size} values would take {_size(need)} to evaluate, more than the {_size(max_image_bytes)} "
            "allowed per pair (--max-image-bytes)",
        )


# ---------------------------------------------------------------------------------------------
# The boundary around decoders.

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _raised_by_bce_eval(error: BaseException) -> bool:
    """Whether the innermost frame of error's traceback is bce-eval's own code: a bug, not a
    property of the file (a C function that bce-eval calls directly counts as bce-eval: the
    errors such calls raise on bad data are caught where they are made)."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == _PACKAGE


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, (OSError, ValueError, EOFError, SyntaxError)) and text:
        return text  # the decoders' usual errors: their message says it
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class decoding:  # lower case: it reads as what it is used as, with decoding(path): ...
    """Run a decoder on path: whatever it raises becomes path's InputError, and what it warns
    about the file too.

    One boundary, rather than a list of the exceptions each library is known to raise: a damaged
    file has made tifffile raise ZeroDivisionError, lzma.LZMAError, KeyError and TypeError, and
    pypng and Pillow a dozen kinds more, and the next release will find others. MemoryError is
    the file's too (the budget is checked first, but a decoder may still allocate more than the
    header said). What stays visible is a bug in bce-eval itself: an exception raised by
    bce-eval's own code, not inside a library it called, propagates with its traceback.

    A class rather than a generator: it wraps every decode, 20,000 of them a second on 28x28.
    """

    __slots__ = ("caught", "failure", "path", "previous")

    def __init__(self, path: Path | str, failure: str = "cannot decode") -> None:
        self.path = path
        self.failure = failure  # how the message begins

    def __enter__(self) -> None:
        _install_warning_hook()
        self.previous = getattr(_local, "sink", None)
        self.caught: list[tuple[type[Warning], str]] = []
        _local.sink = self.caught

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        _local.sink = self.previous
        path = self.path
        if error is None:
            for category, message in self.caught:
                if not _suppressed(category):
                    raise InputError(path, f"damaged: {message}")
            return
        if isinstance(error, InputError) or not isinstance(error, Exception):
            return  # ours already, or KeyboardInterrupt, SystemExit
        if isinstance(error, MemoryError):
            raise InputError(path, f"{self.failure}: the image does not fit in memory") from None
        if isinstance(error, RecursionError):  # a structure nested past Python's limit, in a parser
            raise InputError(path, f"{self.failure}: nested too deeply") from None
        if _raised_by_bce_eval(error):
            return  # a bug: it propagates with its traceback
        raise InputError(path, f"{self.failure}: {_describe(error)}") from None


# ---------------------------------------------------------------------------------------------
# Warnings: captured per thread while a file is decoded (the torch backend decodes in threads,
# and warnings.catch_warnings swaps process-wide state, so it is not safe there).

_local = threading.local()
_lock = threading.Lock()
# The libraries that decode: their warnings are shown every time, not once per place in their
# code, so that the second file damaged as the first is caught as well.
_DECODER_MODULES = r"(PIL|tifffile|png|pyspng|simplejpeg|imagecodecs)(\.|$)"


def _suppressed(category: type[Warning]) -> bool:
    """Warnings that say nothing about the file's integrity, dropped with their reason:

    Pillow's DecompressionBombWarning counts pixels; bce-eval's byte budget, checked from the
    header before any decoding, is the limit that applies, and a pair under it is evaluated."""
    from PIL import Image

    return issubclass(category, Image.DecompressionBombWarning)


def _showwarning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
    sink = getattr(_local, "sink", None)
    if sink is None:
        _showwarning.previous(message, category, filename, lineno, file, line)  # type: ignore[attr-defined]
    else:
        sink.append((category, str(message)))


_filters_seen: list[object] = [None, -1]  # the warnings.filters list last checked, and its length


class LibraryError(Warning):
    """A decoder library's log record at ERROR or above, caught while a file is decoded."""


class _LibraryLogHandler(logging.Handler):
    """On the decoder libraries' top loggers (PIL, tifffile), which their modules' loggers
    propagate to: while this thread decodes a file, a record at ERROR or above goes to the file's
    sink (its error), and none reaches Python's last-resort handler, which would print it on
    stderr. Below ERROR, tifffile and Pillow report metadata they skipped (a description they
    could not parse); the decode itself says whether the pixels could be read. Outside a decode,
    a record goes where it would have gone: to the last-resort handler when logging is not
    configured (a handler here keeps logging from calling it)."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = getattr(_local, "sink", None)
        if sink is not None:
            if record.levelno >= logging.ERROR:
                sink.append((LibraryError, record.getMessage()))
            return
        last_resort = logging.lastResort
        if (
            not logging.getLogger().handlers
            and last_resort is not None
            and record.levelno >= last_resort.level
        ):
            last_resort.handle(record)


_log_handler = _LibraryLogHandler()
_LIBRARY_LOGGERS = ("PIL", "tifffile", "png")


def _catch_library_logs() -> None:
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if _log_handler not in logger.handlers:
            logger.addHandler(_log_handler)


def _install_warning_hook() -> None:
    """Route warnings to the decoding thread's sink, keeping whatever showwarning was there for
    every other warning; installed again when something (pytest, catch_warnings) replaced it."""
    filters = warnings.filters
    if warnings.showwarning is _showwarning and _filters_seen == [filters, len(filters)]:
        return  # the usual case, without the lock
    with _lock:
        _catch_library_logs()
        if warnings.showwarning is not _showwarning:
            _showwarning.previous = warnings.showwarning  # type: ignore[attr-defined]
            warnings.showwarning = _showwarning
        if not any(f[0] == "always" and f[3] is not None and f[3].pattern == _DECODER_MODULES
                   for f in warnings.filters):  # fmt: skip
            warnings.filterwarnings("always", module=_DECODER_MODULES)
        _filters_seen[:] = [warnings.filters, len(warnings.filters)]


# ---------------------------------------------------------------------------------------------
# libtiff, inside Pillow, prints its errors and warnings from C straight to stderr.

_libtiff_quiet = False


def quiet_libtiff() -> None:
    """Remove libtiff's message handlers, once per process (forked workers inherit it).

    Its errors reach bce-eval anyway, as Pillow's exception for the file (its one-line error),
    and its warnings are about tags bce-eval does not use (a private tag, an unusual value), so
    neither needs its own lines between bce-eval's. Linux only, where the library Pillow loaded
    can be found in /proc/self/maps; elsewhere libtiff keeps its handlers."""
    global _libtiff_quiet
    if _libtiff_quiet or not sys.platform.startswith("linux"):
        return
    with _lock:
        if _libtiff_quiet:
            return
        _libtiff_quiet = True
        from PIL import Image  # noqa: F401  # loads Pillow's libtiff, if it has one

        try:
            with open("/proc/self/maps") as maps:
                libraries = {line.split()[-1] for line in maps if "/libtiff" in line}
        except OSError:
            return
        for library in libraries:
            try:
                lib = ctypes.CDLL(library)
            except OSError:
                continue
            for name in ("TIFFSetErrorHandler", "TIFFSetErrorHandlerExt", "TIFFSetWarningHandler",
                         "TIFFSetWarningHandlerExt"):  # fmt: skip
                setter = getattr(lib, name, None)
                if setter is not None:
                    setter.restype, setter.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
                    setter(None)


# ---------------------------------------------------------------------------------------------
# Small files a user names: lists of pairs, reports used as a baseline or merged.

# Larger than any list or report bce-eval writes for a million images, small enough to hold.
MAX_LIST_BYTES = 1 << 30


def read_input_file(path: Path | str, *, what: str, max_bytes: int = MAX_LIST_BYTES) -> bytes:
    """The bytes of a list or report file, read defensively: only a regular file is opened, and
    without blocking, so a FIFO or a device (/dev/zero, a terminal) is refused at once, as is a
    file larger than max_bytes; every problem is one InputError naming the file and ``what`` it
    was given as ("the pair list", "the baseline")."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError(path, f"cannot read {what}: no such file") from None
    except (OSError, ValueError) as e:
        problem = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise InputError(path, f"cannot read {what}: {problem}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(path, f"cannot read {what}: is a folder")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(path, f"cannot read {what}: not a regular file (a pipe or a device)")
        if info.st_size > max_bytes:
            raise InputError(
                path, f"cannot read {what}: {_size(info.st_size)}, more than the {_size(max_bytes)} allowed"
            )
        parts, total = [], 0
        while chunk := os.read(fd, min(max_bytes + 1 - total, 1 << 24) or 1):
            parts.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # it grew while being read
                raise InputError(path, f"cannot read {what}: more than the {_size(max_bytes)} allowed")
        return b"".join(parts)
    except OSError as e:
        raise InputError(path, f"cannot read {what}: {e.strerror or e}") from None
    finally:
        os.close(fd)


__all__ = [
    "InputError",
    "available_memory",
    "check_budget",
    "decoding",
    "default_max_image_bytes",
    "pair_bytes",
    "printable",
    "quiet_libtiff",
    "read_input_file",
]
