"""Object storage: TARGETS, RECONS, --pairs, --baseline and the reports as fsspec URLs
(s3://, gs://, az://, http(s):// for reading, memory://, file://).

Local paths never come here, and a run on local paths never imports fsspec: its start-up and
its fast path (files read by the decoders themselves) are unchanged.

- Listing: one ``fs.find`` per prefix, which S3, GCS and Azure answer with a paginated listing
  of every object under it (1,000 keys a request on S3), not a request per folder. A ``--pairs``
  list replaces listing altogether, for sets of millions of objects.
- Reading: the objects of a chunk of pairs are fetched together, concurrently
  (``fs.cat_ranges``: one GET each, on fsspec's event loop for the async stores), then decoded
  from memory by the same decoders as files on disk. Small images are latency-bound: one
  request at a time would leave the worker waiting on the network.
- Writing: a report is rendered in memory, and put in one request only once it is complete,
  so a reader never sees half a report.

Credentials come from each store's usual places (environment, configuration files, instance
metadata); ``--storage-option KEY=VALUE`` adds options such as ``endpoint_url`` for an
S3-compatible server. The same options go to every URL of a run.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeGuard

from .errors import BceEvalError, InputError, OptionError, ReportError

if TYPE_CHECKING:
    from .images import Pairing, _Scan

_SCHEME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")

# Where each store's fsspec package comes from.
PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


def is_url(path: object) -> TypeGuard[str]:
    """Whether path is a URL (``scheme://...``) rather than a local path; never imports fsspec.
    A scheme has two characters or more: one letter is a Windows drive (C://data). Plain
    string tests, no regular expression: this runs at every start.

    >>> is_url("s3://bucket/targets"), is_url("targets"), is_url("C://data"), is_url("a/b://c")
    (True, False, False, False)
    """
    if not isinstance(path, str):
        return False
    scheme, separator, _ = path.partition("://")
    return (
        bool(separator)
        and len(scheme) >= 2
        and scheme[0].isascii()
        and scheme[0].isalpha()
        and _SCHEME_CHARACTERS.issuperset(scheme)
    )


def _value(text: str) -> Any:
    """A --storage-option value: true/false, none/null, whole and decimal numbers as such; text
    in double quotes, and anything else, as text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def parse_options(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items as fsspec storage options; a dotted key sets a nested option.

    >>> parse_options(["endpoint_url=http://127.0.0.1:9000", "anon=false", "client_kwargs.region_name=eu"])
    {'endpoint_url': 'http://127.0.0.1:9000', 'anon': False, 'client_kwargs': {'region_name': 'eu'}}
    >>> parse_options(["max_concurrency=4", "default_block_size=1e6", 'key="0123"'])
    {'max_concurrency': 4, 'default_block_size': 1000000.0, 'key': '0123'}
    """
    options: dict[str, Any] = {}
    for item in items:
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals or not key or any(not part for part in key.split(".")):
            raise OptionError("--storage-option", f"expected KEY=VALUE, not {item!r}")
        *parents, last = key.split(".")
        node = options
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise OptionError("--storage-option", f"{key}: {part} is given both a value and sub-keys")
        if isinstance(node.get(last), dict):
            raise OptionError("--storage-option", f"{key}: {last} is given both a value and sub-keys")
        node[last] = _value(text)
    return options


def _reason(error: BaseException) -> str:
    """What went wrong reading or listing, in words: the store's own message, which names the
    cause (no credentials, access denied, no such bucket)."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "is a folder"
    if isinstance(error, PermissionError):
        return f"access denied ({error})" if str(error) else "access denied"
    return f"{type(error).__name__}: {error}" if not str(error) else str(error)


@functools.cache
def _reset_event_loop_after_fork() -> None:
    """A process forked after fsspec started its event loop (the local engine's workers, forked
    after the listing) must start one of its own: older fsspec (2024.3.1, for one) left the child the
    parent's loop, whose thread the child does not have, and every read waited forever."""
    import fsspec.asyn

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=fsspec.asyn.reset_lock)


def _takes_max_concurrency(fs: Any) -> bool:
    """Whether the store's cat_file takes max_concurrency (s3fs, adlfs): with it above 1, s3fs
    first asks for the object's size (a HEAD) to split large objects; 1 makes it one GET."""
    import inspect

    try:
        return "max_concurrency" in inspect.signature(fs._cat_file).parameters
    except (AttributeError, TypeError, ValueError):
        return False


class Storage:
    """The fsspec options every URL of a run is opened with. Small and picklable: worker
    processes and Dask workers receive it and open the same stores with it. (A plain class:
    a dataclass would add most of a millisecond to every start.)"""

    __slots__ = ("options",)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})

    def __repr__(self) -> str:
        return f"Storage({sorted(self.options)})"  # keys only: values may be secrets

    def filesystem(self, url: str) -> tuple[Any, str]:
        """The fsspec filesystem for url (fsspec keeps one instance per set of options) and the
        path in it; InputError if the store cannot be used (no fsspec package for it)."""
        try:
            import fsspec.core
        except ImportError:
            raise InputError(url, "reading URLs needs fsspec: pip install 'bce-eval[dask]'") from None
        scheme = url.partition("://")[0].lower()
        _reset_event_loop_after_fork()
        try:
            return fsspec.core.url_to_fs(url, **self.options)
        except ImportError:
            package = PACKAGES.get(scheme, f"the fsspec package for {scheme}://")
            raise InputError(url, f"{scheme}:// needs {package}: pip install {package}") from None
        except TypeError as e:  # an option the store does not take
            raise OptionError("--storage-option", f"{scheme}://: {e}") from None
        except ValueError as e:  # a protocol fsspec does not know
            raise InputError(url, str(e)) from None

    # ----------------------------------------------------------------------------------------
    # Listing and pairing.

    def scan(self, root: str, strip_suffix: str = "") -> _Scan:
        """Image files under the prefix root by key, as images._scan finds them in a folder:
        relative path without extension (and without strip_suffix), hidden names skipped,
        other suffixes listed as ignored. One paginated listing; nothing is read or looked at."""
        from .images import SUFFIXES, _Scan

        fs, path = self.filesystem(root)
        prefix = path.rstrip("/") + "/"
        try:
            found = fs.find(path)
        except FileNotFoundError:
            found = []
        # The stores raise their own exceptions (botocore's, google-auth's, azure-core's) for
        # credentials, permissions and the network; each is a problem with this folder.
        except Exception as e:
            raise InputError(root, f"cannot list: {_reason(e)}") from None
        # s3fs keeps what it listed (a dict of about a kilobyte per object) to answer later
        # listings; this run lists each prefix once, and keeps only the names.
        fs.invalidate_cache(path)
        if not found:
            raise InputError(root, "is not a folder (nothing is stored under it)")
        if found == [path]:
            raise InputError(root, "is not a folder")
        files: dict[str, list[str]] = defaultdict(list)
        ignored: list[str] = []
        suffixes = frozenset(s.removeprefix(".") for s in SUFFIXES)
        base = root.rstrip("/") + "/"
        for listed in found:
            if not listed.startswith(prefix):
                continue
            relative = listed[len(prefix) :]
            if not relative or any(part.startswith(".") for part in relative.split("/")):
                continue
            url = base + relative
            key, dot, suffix = relative.rpartition(".")
            if not dot or "/" in suffix or suffix.lower() not in suffixes:
                ignored.append(url)
                continue
            if strip_suffix and key.endswith(strip_suffix):
                key = key[: -len(strip_suffix)]
            files[key].append(url)
        for urls in files.values():
            urls.sort()
        ignored.sort()
        return _Scan(files, ignored, {}, {}, [])

    def pairing(
        self,
        targets: str,
        recons: str,
        *,
        recon_suffix: str = "",
        pairs: str | None = None,
        allow_outside: bool = False,
    ) -> Pairing:
        """Pairs as images.pair_folders and images.pairs_from_csv make them, where any of
        TARGETS, RECONS and the pair list may be a URL (the others local paths); a listed path
        must lead inside its folder or prefix unless ``allow_outside``."""
        from . import images

        if pairs is not None:
            text = self.read_text(pairs, InputError, "cannot read the pair list") if is_url(pairs) else None
            roots = [r if is_url(r) else Path(r) for r in (targets, recons)]
            return images.pairs_from_csv(pairs, roots[0], roots[1], allow_outside=allow_outside, text=text)
        scans = [
            self.scan(root, suffix) if is_url(root) else images._scan(Path(root), suffix)
            for root, suffix in ((targets, ""), (recons, recon_suffix))
        ]
        return images.pair_scans(scans[0], scans[1], targets, recons)

    # ----------------------------------------------------------------------------------------
    # Reading.

    def fetch(self, urls: Iterable[str]) -> dict[str, bytes | InputError]:
        """Every object's bytes, or the InputError that says why it cannot be read, fetched
        concurrently: one request each, all of a store's in one batch."""
        by_scheme: dict[str, list[str]] = defaultdict(list)
        for url in dict.fromkeys(urls):
            by_scheme[url.partition("://")[0].lower()].append(url)
        fetched: dict[str, bytes | InputError] = {}
        for group in by_scheme.values():
            try:
                fs, _ = self.filesystem(group[0])
            except BceEvalError as e:
                fetched.update((url, InputError(url, getattr(e, "problem", str(e)))) for url in group)
                continue
            paths = [fs._strip_protocol(url) for url in group]
            extra = {"max_concurrency": 1} if _takes_max_concurrency(fs) else {}
            try:
                blobs: list[Any] = fs.cat_ranges(paths, None, None, on_error="return", **extra)
            except Exception as e:  # the store's own exceptions: each pair gets the message
                blobs = [e] * len(paths)
            for url, blob in zip(group, blobs, strict=True):
                fetched[url] = (
                    bytes(blob) if isinstance(blob, (bytes, bytearray)) else InputError(url, _reason(blob))
                )
        return fetched

    def read_text(self, url: str, error: type[InputError] | type[ReportError], what: str) -> str:
        """A pair list or report read whole, as UTF-8 (a byte order mark dropped); ``error``
        (InputError or ReportError) naming url if it cannot be read."""
        fs, path = self.filesystem(url)
        try:
            data = fs.cat_file(path)
        except Exception as e:  # the store's own exceptions, as in scan
            raise error(url, f"{what}: {_reason(e)}") from None
        try:
            return bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise error(url, f"{what}: {e}") from None

    def read_bytes(self, url: str) -> bytes:
        """A report's bytes; ReportError if it cannot be read."""
        fs, path = self.filesystem(url)
        try:
            return bytes(fs.cat_file(path))
        except Exception as e:  # the store's own exceptions, as in scan
            raise ReportError(url, f"cannot read: {_reason(e)}") from None

    # ----------------------------------------------------------------------------------------
    # Writing reports.

    @staticmethod
    def render(reports: Sequence[tuple[str, Callable[[IO[str]], None]]]) -> list[tuple[str, bytes]]:
        """Each (url, writer) report rendered in memory, as UTF-8 with names kept as their bytes
        (as report files are written); nothing is sent yet."""
        rendered = []
        for url, write in reports:
            out = io.StringIO(newline="")
            write(out)
            try:
                rendered.append((url, out.getvalue().encode("utf-8", "surrogateescape")))
            except UnicodeEncodeError as e:
                text = e.object[e.start : e.end]
                raise ReportError(url, f"cannot write {text!r}: not encodable as utf-8") from None
        return rendered

    def put(self, rendered: Sequence[tuple[str, bytes]]) -> None:
        """Each complete report in one request (S3, GCS and Azure replace an object whole);
        ReportError naming the first that cannot be written."""
        for url, data in rendered:
            try:
                fs, path = self.filesystem(url)
            except BceEvalError as e:
                raise ReportError(url, f"cannot write: {getattr(e, 'problem', e)}") from None
            try:
                fs.pipe_file(path, data)
            except Exception as e:  # the store's own exceptions, as in scan
                raise ReportError(url, f"cannot write: {_reason(e)}") from None
