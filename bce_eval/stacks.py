"""Batches of images in .npy and .npz files: headers read, items streamed in chunks.

A batch file ("stack") holds one array of images, items first: N x H x W x C (``nhwc``),
N x C x H x W (``nchw``) or N x H x W (``nhw``, one channel). A .npz file holds several, one per
member. The layout is given (``--layout``) or the default for the array's dimensions, nhwc for
4-D and nhw for 3-D; it is never guessed from the sizes.

Only the header is read when a stack is opened. Items are then read a chunk at a time: through a
memory map of just that chunk (a .npy file, or a .npz member stored without compression, as
``np.savez`` writes them), or from the decompressed stream of a compressed member
(``np.savez_compressed``), in order. A map is released once its chunk is scored, so a stack
larger than memory (or than the address space a process may use) is evaluated with flat memory.
Nothing is ever unpickled.

Pairing: each item is a pair named ``file[i]`` (``file/key[i]`` for a .npz member, whose keys
pair by name); ``--pairs order`` pairs item by item in order, across files and stacks alike.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import InputError, printable
from .images import MAX_PIXELS, Pair, Pairing, file_problem
from .model import LAYOUTS, Layouts

ARRAY_SUFFIXES = (".npy", ".npz")
# Bytes of a stack read at once: enough to keep per-call overhead small, little next to memory.
CHUNK_BYTES = 1 << 24
MAX_CHUNK_ITEMS = 128


def stack_dimensions(layout: str | None) -> int:
    """How many dimensions a .npy in a folder has when it is a stack rather than one image."""
    return len(layout) if layout else 4


def default_layout(dimensions: int) -> str | None:
    return {4: "nhwc", 3: "nhw"}.get(dimensions)


@dataclass(frozen=True)
class Stack:
    """One array of images in a .npy file or .npz member, known by its header.

    ``offset`` is where the array's data starts in ``path``: a memory map can reach it. It is
    None for a compressed .npz member, which is read from its decompressed stream.
    """

    name: str  # the pairs' name stem: items are name[i]
    path: str
    key: str | None  # the .npz member, without ".npy"
    shape: tuple[int, ...]  # as stored, items first
    dtype: np.dtype[Any]
    offset: int | None
    layout: str
    alone: bool = False  # a stack of one item paired with an image: its item is named ``name``

    @property
    def items(self) -> int:
        return self.shape[0]

    @property
    def label(self) -> str:
        return self.path if self.key is None else f"{self.path}/{self.key}"

    def item_label(self, i: int) -> str:
        return f"{self.label}[{i}]"

    def item_name(self, i: int) -> str:
        return self.name if self.alone else f"{self.name}[{i}]"

    @property
    def item_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first item, array of consecutive items) for the whole stack, in order. A mapped
        chunk's pages are read only where its items are used."""
        per_chunk = max(1, min(MAX_CHUNK_ITEMS, CHUNK_BYTES // max(self.item_bytes, 1)))
        if self.offset is None:
            yield from self._streamed(per_chunk)
            return
        for start in range(0, self.items, per_chunk):
            yield start, self._mapped(start, min(start + per_chunk, self.items))

    def _mapped(self, start: int, stop: int) -> np.ndarray:
        assert self.offset is not None
        if stop == start or self.item_bytes == 0:
            return np.empty((stop - start, *self.shape[1:]), self.dtype)
        try:
            return np.memmap(
                self.path,
                dtype=self.dtype,
                mode="r",
                offset=self.offset + start * self.item_bytes,
                shape=(stop - start, *self.shape[1:]),
            )
        except (OSError, ValueError) as e:
            raise InputError(self.label, f"cannot read items {start} to {stop - 1}: {e}") from None

    def _streamed(self, per_chunk: int) -> Iterator[tuple[int, np.ndarray]]:
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(f"{self.key}.npy") as member:
                _read_header(member, self.label)
                for start in range(0, self.items, per_chunk):
                    stop = min(start + per_chunk, self.items)
                    size = (stop - start) * self.item_bytes
                    data = member.read(size)
                    if len(data) < size:
                        raise InputError(
                            self.label, f"ends inside item {start + len(data) // self.item_bytes}"
                        )
                    yield start, np.frombuffer(data, self.dtype).reshape(stop - start, *self.shape[1:])
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
            raise InputError(self.label, f"cannot read: {e}") from None


@dataclass(frozen=True)
class File:
    """One image file as one item of a sequence (``--pairs order``)."""

    name: str
    path: str

    @property
    def items(self) -> int:
        return 1


Source = Stack | File


@dataclass(frozen=True)
class Batch:
    """Pairs read in this process, item by item: item i of the target side with item i of the
    recon side. Each side is a sequence of stacks and files (a single stack, unless pairing
    ``--pairs order``); pairs are named after the target side's items."""

    target: tuple[Source, ...]
    recon: tuple[Source, ...]

    @property
    def pairs(self) -> int:
        return max(sum(s.items for s in self.target), sum(s.items for s in self.recon))

    def names(self) -> Iterator[str]:
        """Every pair's name, in order: the target item's, or past the end of the target side,
        the recon item's."""
        for target, recon in itertools.zip_longest(side_names(self.target), side_names(self.recon)):
            yield target if target is not None else recon


def side_names(side: Sequence[Source]) -> Iterator[str]:
    for source in side:
        if isinstance(source, File):
            yield source.name
        else:
            yield from (source.item_name(i) for i in range(source.items))


# --------------------------------------------------------------------------------------------
# Headers.

# The shape in a .npy header, e.g. 'shape': (10, 28, 28, 1), to count dimensions cheaply.
_SHAPE = re.compile(rb"""['"]shape['"]\s*:\s*\(([^)]*)\)""")


def npy_dimensions(path: str) -> int | None:
    """The number of dimensions a .npy file's header claims, from its first bytes, without
    parsing the header; None if they do not say (not a .npy file, a damaged header, a FIFO)."""
    if file_problem(Path(path)) is not None:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if not head.startswith(b"\x93NUMPY"):
        return None
    match = _SHAPE.search(head)
    if match is None:
        return None
    return len([part for part in match.group(1).split(b",") if part.strip()])


def _read_header(f: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, fortran_order, dtype) from a .npy header at f's position; f is left at the
    data. InputError for a header numpy cannot read or a dtype that holds Python objects."""
    import tokenize

    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise InputError(where, f"cannot read .npy format version {version[0]}.{version[1]}")
    except (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError) as e:
        raise InputError(where, f"cannot read .npy: {e}") from None
    if dtype.hasobject:
        raise InputError(where, "holds Python objects, which are never loaded")
    return tuple(int(n) for n in shape), bool(fortran), dtype


def _stack(name: str, path: str, key: str | None, f: IO[bytes], layout: str | None) -> Stack:
    """A Stack from the header at f's position; the caller checks that its data is there."""
    where = path if key is None else f"{path}/{key}"
    shape, fortran, dtype = _read_header(f, where)
    start = f.tell()
    chosen = layout or default_layout(len(shape))
    if chosen is None or len(shape) != len(chosen):
        expected = f"layout {chosen} has {len(chosen)}" if chosen else "a batch has 3 (nhw) or 4 (nhwc, nchw)"
        raise InputError(where, f"has shape {shape} ({len(shape)} dimensions) but {expected}")
    if fortran and len(shape) > 1:
        raise InputError(
            where,
            "is stored in Fortran order, whose items are not contiguous and cannot be streamed; "
            "save it with np.save(path, np.ascontiguousarray(batch))",
        )
    sizes = dict(zip(chosen, shape, strict=True))
    if sizes["h"] * sizes["w"] > MAX_PIXELS:
        limit = f"more than the {MAX_PIXELS:,} allowed against decompression bombs"
        raise InputError(where, f"claims items of {sizes['w']}x{sizes['h']} pixels, {limit}")
    if 0 in shape[1:]:
        raise InputError(where, f"has shape {shape}: items without pixels")
    stack = Stack(name, path, key, shape, dtype, start, chosen)
    return stack


def open_npy(name: str, path: str, layout: str | None) -> Stack:
    """A .npy stack by its header; InputError if it cannot be one."""
    problem = file_problem(Path(path))
    if problem is not None:
        raise InputError(path, problem)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            stack = _stack(name, path, None, f, layout)
    except OSError as e:
        raise InputError(path, f"cannot be read: {e.strerror or e}") from None
    if stack.item_bytes * stack.items > size - (stack.offset or 0):
        raise InputError(path, f"its header claims {stack.shape} {stack.dtype} but the file holds less data")
    return stack


# The fixed part of a zip local file header: signature, then the lengths of the name and extra.
_LOCAL_HEADER = struct.Struct("<4s22xHH")


def open_npz(name: str, path: str, layout: str | None) -> tuple[list[Stack], list[tuple[str, str]]]:
    """The members of a .npz file as stacks named ``name/key``, and (key, problem) for members
    that cannot be one; InputError if the file is not a zip archive."""
    problem = file_problem(Path(path))
    if problem is not None:
        raise InputError(path, problem)
    stacks, problems = [], []
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                key = info.filename.removesuffix(".npy")
                if not info.filename.endswith(".npy"):
                    problems.append((key, "not a .npy member"))
                    continue
                if info.flag_bits & 0x1:
                    problems.append((key, "is encrypted"))
                    continue
                try:
                    if info.compress_type == zipfile.ZIP_STORED:
                        raw.seek(info.header_offset)
                        signature, name_length, extra_length = _LOCAL_HEADER.unpack(
                            raw.read(_LOCAL_HEADER.size)
                        )
                        if signature != b"PK\x03\x04":
                            raise InputError(f"{path}/{key}", "damaged zip entry")
                        data_start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
                        raw.seek(data_start)
                        stack = _stack(f"{name}/{key}", path, key, raw, layout)
                        if stack.item_bytes * stack.items > info.file_size - (
                            (stack.offset or 0) - data_start
                        ):
                            raise InputError(
                                f"{path}/{key}",
                                f"its header claims {stack.shape} {stack.dtype} but holds less data",
                            )
                    else:
                        with archive.open(info) as member:
                            stack = replace(_stack(f"{name}/{key}", path, key, member, layout), offset=None)
                except InputError as e:
                    problems.append((key, e.problem))
                    continue
                stacks.append(stack)
    except (zipfile.BadZipFile, OSError, EOFError, struct.error, NotImplementedError) as e:
        raise InputError(path, f"cannot read .npz: {e}") from None
    return stacks, problems


def open_batch_file(name: str, path: str, layout: str | None) -> list[Stack]:
    """The stacks of a .npy or .npz file given as TARGETS or RECONS (InputError if none)."""
    if path.lower().endswith(".npz"):
        stacks, problems = open_npz(name, path, layout)
        if problems:
            key, problem = problems[0]
            raise InputError(f"{path}/{key}", problem)
        if not stacks:
            raise InputError(path, "holds no arrays")
        return stacks
    return [open_npy(name, path, layout)]


# --------------------------------------------------------------------------------------------
# Pairing.


@dataclass(frozen=True)
class Plan:
    """What a run evaluates, in order: file pairs (scored by the engine's workers) and batches
    (read and scored in this process), and the files ignored."""

    units: list[Pair | Batch]
    ignored: list[str]

    @property
    def files(self) -> list[Pair]:
        return [u for u in self.units if isinstance(u, Pair)]


def _is_array(path: str | None) -> bool:
    return path is not None and path.lower().endswith(ARRAY_SUFFIXES)


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix else path.name


def _pair_stacks(name: str, targets: list[Stack], recons: list[Stack], t: str, r: str) -> list[Pair | Batch]:
    """Stacks of one file pair (a .npz file's members by key), as batches; unpaired members as
    failed pairs."""
    units: list[Pair | Batch] = []
    by_key = {s.key: s for s in recons}
    for stack in targets:
        partner = by_key.pop(stack.key, None)
        if partner is None:
            units.append(
                Pair(stack.name, stack.label, None, f"no member {stack.key!r} in {printable(r)}", stack.label)
            )
        else:
            units.append(Batch((stack,), (partner,)))
    for stack in by_key.values():
        units.append(
            Pair(stack.name, None, stack.label, f"no member {stack.key!r} in {printable(t)}", stack.label)
        )
    return units


def _npz_units(pair: Pair, layouts: Layouts) -> list[Pair | Batch]:
    assert pair.target is not None and pair.recon is not None
    opened = []
    for path, layout in zip((pair.target, pair.recon), layouts, strict=True):
        try:
            stacks, problems = open_npz(pair.name, path, layout)
        except InputError as e:
            return [Pair(pair.name, pair.target, pair.recon, e.problem, path)]
        opened.append((stacks, problems))
    (t_stacks, t_problems), (r_stacks, r_problems) = opened
    units = _pair_stacks(pair.name, t_stacks, r_stacks, pair.target, pair.recon)
    for path, problems in ((pair.target, t_problems), (pair.recon, r_problems)):
        for key, problem in problems:
            units.append(Pair(f"{pair.name}/{key}", pair.target, pair.recon, problem, f"{path}/{key}"))
    return sorted(units, key=_unit_name)


def _unit_name(unit: Pair | Batch) -> str:
    if isinstance(unit, Pair):
        return unit.name
    first = unit.target[0]
    return first.name


def classify(pair: Pair, layouts: Layouts, *, sniff: bool = True) -> list[Pair | Batch]:
    """A pair of the folders' pairing as files for the engine, or as batches when one side is
    a batch file: a .npz, or (``sniff``: its header is read) a .npy with as many dimensions as
    the layout's. Without ``sniff`` a .npy pair stays a file pair: the engine's worker refuses
    it as one image if it holds a batch, and the pipeline classifies it again then, so that a
    folder of single-image .npy files costs no header read here."""
    t, r = pair.target, pair.recon
    if pair.problem is not None or t is None or r is None or not (_is_array(t) or _is_array(r)):
        return [pair]
    npz = [p.lower().endswith(".npz") for p in (t, r)]
    if all(npz):
        return _npz_units(pair, layouts)
    stacked = [
        is_npz or (sniff and p.lower().endswith(".npy") and npy_dimensions(p) == stack_dimensions(layout))
        for p, is_npz, layout in zip((t, r), npz, layouts, strict=True)
    ]
    if not any(stacked):
        return [pair]
    sides: list[Source] = []
    for path, is_stack, is_npz, layout in zip((t, r), stacked, npz, layouts, strict=True):
        try:
            if is_npz:
                stacks, problems = open_npz(pair.name, path, layout)
                if len(stacks) != 1 or problems:
                    return [Pair(pair.name, t, r, _one_against_batch(path, t if path == r else r), path)]
                sides.append(stacks[0])
            elif is_stack:
                sides.append(open_npy(pair.name, path, layout))
            else:
                sides.append(File(pair.name, path))
        except InputError as e:
            return [Pair(pair.name, t, r, e.problem, path)]
    target, recon = sides
    if isinstance(target, Stack) and isinstance(recon, Stack):
        return [Batch((target,), (recon,))]
    stack = target if isinstance(target, Stack) else recon
    assert isinstance(stack, Stack)
    if stack.items != 1:
        other = r if stack is target else t
        return [Pair(pair.name, t, r, _one_against_batch(stack.label, other, stack.items), stack.label)]
    alone = replace(stack, alone=True)  # a batch of one beside one image: the image's pair
    return [Batch((alone,), (recon,)) if stack is target else Batch((target,), (alone,))]


def _one_against_batch(batch: str, image: str, items: int | None = None) -> str:
    count = f"a batch of {items} items" if items is not None else "a batch"
    return (
        f"holds {count} and its partner {printable(image)} one image; "
        "pair image files with image files and batch files with batch files"
    )


def _side_sources(root: Path, paths: Sequence[str], layout: str | None) -> tuple[list[Source], list[Pair]]:
    """The files of a folder (or the one batch file given), in name order, as a sequence of
    items for ``--pairs order``; files that cannot be opened are returned as failed pairs."""
    sources: list[Source] = []
    problems: list[Pair] = []
    for path in paths:
        relative = Path(path).relative_to(root).as_posix() if root.is_dir() else Path(path).name
        name = relative[: -len(Path(relative).suffix)] if Path(relative).suffix else relative
        try:
            if path.lower().endswith(".npz"):
                sources.extend(open_batch_file(name, path, layout))
            elif path.lower().endswith(".npy") and (
                not root.is_dir() or npy_dimensions(path) == stack_dimensions(layout)
            ):
                sources.append(open_npy(name, path, layout))
            else:
                sources.append(File(name, path))
        except InputError as e:
            problems.append(Pair(name, path, None, e.problem, path))
    return sources, problems


def _files_under(root: Path) -> tuple[list[str], list[str]]:
    """Image and batch files under a folder in name order (or the batch file given), and the
    ignored ones."""
    from .images import _scan

    if root.is_file():
        return [str(root)], []
    scan = _scan(root)
    return [p for key in sorted(scan.files) for p in scan.files[key]], scan.ignored


def plan_pairs(
    targets: Path,
    recons: Path,
    *,
    recon_suffix: str = "",
    pairs: str | os.PathLike[str] | None = None,
    layouts: Layouts = (None, None),
    sniff: bool = False,
    allow_outside: bool = False,
) -> Plan:
    """What to evaluate: files paired by name (or by a --pairs CSV), batch files paired with
    batch files, or (``pairs="order"``) item i of TARGETS with item i of RECONS.

    ``sniff``: read each .npy file's header now to tell batches from images (see classify).
    ``allow_outside``: --pairs rows may name files outside TARGETS and RECONS.
    Raises InputError (a missing folder, a batch file facing a folder without ``--pairs
    order``, a batch file that cannot be read) or OptionError before any image is read."""
    from . import images

    ordered = pairs is not None and os.fspath(pairs) == "order"
    for side in (targets, recons):
        if side.is_file() and not str(side).lower().endswith(ARRAY_SUFFIXES):
            raise InputError(side, "is a file: give a folder, or a .npy or .npz batch file")
    target_file, recon_file = targets.is_file(), recons.is_file()
    if ordered:
        units: list[Pair | Batch] = []
        sides, ignored = [], []
        for root, layout in zip((targets, recons), layouts, strict=True):
            paths, skipped = _files_under(root)
            sources, problems = _side_sources(root, paths, layout)
            sides.append(tuple(sources))
            units.extend(problems)
            ignored += skipped
        units.append(Batch(sides[0], sides[1]))
        return Plan(units, ignored)
    if target_file != recon_file:
        file_side, folder_side = (targets, recons) if target_file else (recons, targets)
        raise InputError(
            file_side,
            f"is a batch file and {printable(folder_side)} a folder: give --pairs order to pair "
            "item i of the one with item i of the other (files in name order)",
        )
    if target_file:
        t_stacks = open_batch_file(_stem(targets), str(targets), layouts[0])
        r_stacks = open_batch_file(_stem(targets), str(recons), layouts[1])
        if targets.suffix.lower() != recons.suffix.lower():
            raise InputError(
                recons, f"is a {recons.suffix} file and {printable(targets)} a {targets.suffix} file"
            )
        if targets.suffix.lower() == ".npz":
            units = _pair_stacks(_stem(targets), t_stacks, r_stacks, str(targets), str(recons))
        else:
            units = [Batch((t_stacks[0],), (r_stacks[0],))]
        return Plan(units, [])
    if pairs is not None:
        pairing: Pairing = images.pairs_from_csv(Path(pairs), targets, recons, allow_outside=allow_outside)
    else:
        pairing = images.pair_folders(targets, recons, recon_suffix=recon_suffix)
    units = [unit for pair in pairing.pairs for unit in classify(pair, layouts, sniff=sniff)]
    return Plan(units, pairing.ignored)


def layouts_read(batches: Sequence[Batch]) -> tuple[str, ...]:
    """The layouts of the stacks read, as the summary states them: (targets', reconstructions'),
    each side's layouts joined by "/" where it had several; () if no stack was read."""
    sides = []
    for side in ((b.target for b in batches), (b.recon for b in batches)):
        found = {s.layout for sources in side for s in sources if isinstance(s, Stack)}
        sides.append("/".join(sorted(found, key=LAYOUTS.index)))
    return tuple(sides) if any(sides) else ()
