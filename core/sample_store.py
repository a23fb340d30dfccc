"""A dataset version's samples on disk, so that nothing needs them all in memory: `.npy` shards of
decoded samples (images uint8 [N, C, H, W] at training size, tables float32 [N, F], series
float32 [N, C, T]), in `numpy.lib.format` layout (`open_memmap` reads them), beside the version's
labels in the database.

A version's samples are a list of segments (`Segment`: rows [start, stop) of one shard), in order.
A version made by an upload has one segment, the whole of its own shard; an append refers to its
parent's segments plus one new shard holding only the added rows, and a relabel with removals to
its parent's segments split around the removed rows, so that neither copies a sample that did
not change. Shards are immutable once written, so versions share them freely.

- Writing (`RowSink`): rows arrive in order, a chunk is buffered and written with one explicit
  write, so the process holds one chunk, never the dataset (a memory map being filled would keep
  every written page in the writer's RSS). `MemorySink` is the same interface over one array,
  for small or built-in sources.
- Reading (`RowReader`): the rows a batch names, read with explicit reads from the file(s), so
  that reading the whole version epoch after epoch never maps it into the reader's memory; the
  page cache holds it, shared and reclaimable, not the process. `open_segments` gives a
  version's samples as one array-like (a shard's memory map for one whole shard, else
  `SegmentedRows`) that `len()`, `.shape` and indexing work on.
- Compaction (`compact`): a version whose rows would be in more than
  `settings.max_version_segments` segments (many appends, or relabels that removed rows all
  over) gets them copied into one shard instead, so that a version's segment list, which each
  child copies, stays bounded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SINK_CHUNK_BYTES = 16 * 1024**2
READ_RUN_ROWS = 64  # consecutive rows read with one call

SinkFactory = Callable[[tuple[int, ...], np.dtype], "RowSink"]


class RowSink:
    """Rows 0..N−1 of an array of `shape` (N first) and `dtype`, put in order."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)

    def put(self, index: int, row: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> np.ndarray:
        """The whole array (read-only for a shard: memory-mapped)."""
        raise NotImplementedError

    def discard(self) -> None:
        """Drop what was written (a failed load)."""


class MemorySink(RowSink):
    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        super().__init__(shape, dtype)
        self.array = np.empty(self.shape, dtype=self.dtype)

    def put(self, index: int, row: np.ndarray) -> None:
        self.array[index] = row

    def finish(self) -> np.ndarray:
        return self.array


class ShardSink(RowSink):
    """A new `.npy` shard at `path`, written a chunk of rows at a time."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, chunk_bytes: int = SINK_CHUNK_BYTES):
        super().__init__(shape, dtype)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=self.shape)
        self.offset = header.offset
        del header  # the file exists at its full (sparse) size with its header; rows follow
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.chunk_rows = max(1, chunk_bytes // max(1, self.row_bytes))
        self._buffer = np.empty((self.chunk_rows, *self.shape[1:]), dtype=self.dtype)
        self._start = 0  # the first row the buffer holds
        self._filled = 0
        self._file = open(self.path, "r+b")  # noqa: SIM115 - closed by finish/discard

    def put(self, index: int, row: np.ndarray) -> None:
        if index != self._start + self._filled:
            raise ValueError(f"rows must be put in order: expected {self._start + self._filled}, got {index}")
        self._buffer[self._filled] = row
        self._filled += 1
        if self._filled == self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if self._filled:
            os.pwrite(self._file.fileno(), self._buffer[: self._filled].tobytes(), self.offset + self._start * self.row_bytes)
        self._start += self._filled
        self._filled = 0

    def finish(self) -> np.ndarray:
        self._flush()
        self._file.close()
        if self._start != self.shape[0]:
            raise ValueError(f"{self._start} rows were put into a shard of {self.shape[0]}")
        return open_shard(self.path)

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def memory_sink(shape: tuple[int, ...], dtype: np.dtype) -> RowSink:
    return MemorySink(shape, dtype)


def shard_sink(path: Path) -> SinkFactory:
    """A sink factory writing the (one) array a loader makes to a shard at `path`."""
    return lambda shape, dtype: ShardSink(path, shape, dtype)


def flags_path(shard: Path) -> Path:
    """Where a shard's known flags (bool [N], when the file had them) are kept beside it."""
    return shard.with_suffix(".flags.npy")


def open_shard(path: Path) -> np.memmap:
    """A shard, memory-mapped read-only (its rows are read with `RowReader`, not through the map)."""
    return np.lib.format.open_memmap(path, mode="r")


def write_shard(path: Path, array: np.ndarray, chunk_rows: int = 4096) -> np.memmap:
    """`array` (in memory or a memory map) copied into a new shard, a chunk at a time."""
    sink = ShardSink(path, array.shape, array.dtype)
    try:
        for start in range(0, len(array), chunk_rows):
            for offset, row in enumerate(np.asarray(array[start : start + chunk_rows])):
                sink.put(start + offset, row)
        return sink.finish()
    except BaseException:
        sink.discard()
        raise


@dataclass(frozen=True)
class Segment:
    """Rows [start, stop) of the shard at `shard` (its path relative to the data dir)."""

    shard: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def as_json(self) -> dict:
        return {"shard": self.shard, "start": self.start, "stop": self.stop}

    @classmethod
    def from_json(cls, value: dict) -> Segment:
        return cls(str(value["shard"]), int(value["start"]), int(value["stop"]))


def segments_without(segments: Sequence[Segment], removed: Iterable[int]) -> list[Segment]:
    """`segments` less the rows at `removed` (indexes into their concatenation): each segment
    split around the removed rows it holds. At least one (then empty) segment is kept, so that
    the rows' shape stays known."""
    removed = sorted(set(removed))
    kept: list[Segment] = []
    offset, cursor = 0, 0  # the first row of the segment; the next removed row to look at
    for segment in segments:
        start = segment.start
        while cursor < len(removed) and removed[cursor] < offset + len(segment):
            row = segment.start + removed[cursor] - offset
            if row > start:
                kept.append(Segment(segment.shard, start, row))
            start = row + 1
            cursor += 1
        if segment.stop > start:
            kept.append(Segment(segment.shard, start, segment.stop))
        offset += len(segment)
    return kept or [Segment(segments[0].shard, 0, 0)]


@dataclass(frozen=True)
class ShardPart:
    """Rows [start, stop) of an open shard."""

    shard: np.memmap
    start: int
    stop: int


class SegmentedRows:
    """The rows of several shard segments, in order, as one read-only array-like: `len()`,
    `shape`, `dtype`, `nbytes` and indexing (an int, a slice, an index or bool array; what it
    returns is a new in-memory array, read with `RowReader`). `np.asarray` reads all of it."""

    def __init__(self, parts: Sequence[ShardPart]):
        if not parts:
            raise ValueError("a segmented array needs at least one segment")
        first = parts[0].shard
        for part in parts:
            if part.shard.dtype != first.dtype or part.shard.shape[1:] != first.shape[1:]:
                raise ValueError(
                    f"shard {part.shard.filename} holds {part.shard.dtype} rows of shape {part.shard.shape[1:]}, "
                    f"not {first.dtype} rows of shape {first.shape[1:]}"
                )
            if not 0 <= part.start <= part.stop <= part.shard.shape[0]:
                raise ValueError(f"rows [{part.start}, {part.stop}) are not in shard {part.shard.filename}")
        self.parts = tuple(parts)
        self.dtype = first.dtype
        self.shape = (sum(part.stop - part.start for part in parts), *first.shape[1:])
        self.ndim = len(self.shape)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self._reader = RowReader(self)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows = self[key[0]]
            return rows[key[1:]] if isinstance(key[0], (int, np.integer)) else rows[(slice(None), *key[1:])]
        if isinstance(key, (int, np.integer)):
            index = int(key) + (len(self) if key < 0 else 0)
            return self._reader.read(np.array([index]))[0]
        if isinstance(key, slice):
            return self._reader.read(np.arange(*key.indices(len(self))))
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return self._reader.read(np.where(index < 0, index + len(self), index))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        step = max(1, SINK_CHUNK_BYTES // max(1, self.nbytes // max(1, len(self))))
        for start in range(0, len(self), step):
            out[start : start + step] = self._reader.read_range(start, start + step)
        return out if dtype is None else out.astype(dtype, copy=False)

    def astype(self, dtype, copy: bool = True) -> np.ndarray:
        return np.asarray(self).astype(dtype, copy=False)


def open_segments(data_dir: Path, segments: Sequence[Segment]) -> np.memmap | SegmentedRows:
    """A version's samples: the shard itself, memory-mapped, when its one segment is the whole
    shard (as before segments), else the segments' rows as `SegmentedRows`. Each shard is
    opened once. Raises `OSError`/`ValueError` when a shard is missing or unreadable."""
    opened: dict[str, np.memmap] = {}
    for segment in segments:
        if segment.shard not in opened:
            opened[segment.shard] = open_shard(Path(data_dir) / segment.shard)
    if len(segments) == 1 and segments[0].start == 0 and segments[0].stop == len(opened[segments[0].shard]):
        return opened[segments[0].shard]
    return SegmentedRows([ShardPart(opened[s.shard], s.start, s.stop) for s in segments])


def compact(data_dir: Path, segments: Sequence[Segment], path: Path) -> np.memmap:
    """The rows of `segments`, in order, copied into one new shard at `path` a chunk at a time
    (`write_shard`), with their known flags beside it when every shard kept them (`flags_path`)."""
    data_dir, path = Path(data_dir), Path(path)
    shard = write_shard(path, open_segments(data_dir, segments))
    flag_files = [flags_path(data_dir / segment.shard) for segment in segments]
    if all(flag_file.is_file() for flag_file in flag_files):
        flags = [np.load(file, mmap_mode="r")[part.start : part.stop] for file, part in zip(flag_files, segments)]
        np.save(flags_path(path), np.concatenate(flags).astype(bool))
    return shard


class RowReader:
    """Rows of a shard (a memory map `open_shard` returned) or of `SegmentedRows`, read with
    explicit reads."""

    def __init__(self, source: np.memmap | SegmentedRows):
        parts = source.parts if isinstance(source, SegmentedRows) else (ShardPart(source, 0, source.shape[0]),)
        first = parts[0].shard
        self.dtype = first.dtype
        self.row_shape = tuple(first.shape[1:])
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.paths = [Path(part.shard.filename) for part in parts]
        self.path = self.paths[0]
        # Part p holds rows starts[p] .. starts[p + 1] - 1, from byte offsets[p] of its file on.
        self.starts = np.cumsum([0] + [part.stop - part.start for part in parts])
        self.offsets = [int(part.shard.offset) + part.start * self.row_bytes for part in parts]
        self.num_rows = int(self.starts[-1])
        self._fds: dict[Path, int] = {}
        self._pid: int | None = None

    def _descriptor(self, path: Path) -> int:
        if self._pid != os.getpid():  # a forked DataLoader worker opens its own
            self._fds, self._pid = {}, os.getpid()
        if path not in self._fds:
            self._fds[path] = os.open(path, os.O_RDONLY)
        return self._fds[path]

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows at `rows` (any order, repeats allowed), as a new in-memory array."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.num_rows):
            raise IndexError(f"rows out of range [0, {self.num_rows})")
        out = np.empty((len(rows), *self.row_shape), dtype=self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8) if len(rows) else None
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        part_of = np.searchsorted(self.starts, sorted_rows, side="right") - 1  # empty parts are skipped
        start = 0
        while start < len(sorted_rows):
            stop = start + 1  # a run of consecutive rows of one part is one read
            while (stop < len(sorted_rows) and stop - start < READ_RUN_ROWS and part_of[stop] == part_of[start]
                   and sorted_rows[stop] == sorted_rows[stop - 1] + 1):  # fmt: skip
                stop += 1
            part = int(part_of[start])
            first = int(sorted_rows[start] - self.starts[part])
            data = os.pread(
                self._descriptor(self.paths[part]), (stop - start) * self.row_bytes,
                self.offsets[part] + first * self.row_bytes,
            )  # fmt: skip
            block = np.frombuffer(data, dtype=np.uint8).reshape(stop - start, self.row_bytes)
            flat[order[start:stop]] = block
            start = stop
        return out

    def read_range(self, start: int, stop: int) -> np.ndarray:
        return self.read(np.arange(start, min(stop, self.num_rows)))

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fds": {}, "_pid": None}
