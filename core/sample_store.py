"""A dataset version's samples on disk, so that nothing needs them all in memory: one `.npy` shard
of the decoded samples (images uint8 [N, C, H, W] at training size, tables float32 [N, F], series
float32 [N, C, T]), in `numpy.lib.format` layout (`open_memmap` reads it), beside the version's
labels in the database.

- Writing (`RowSink`): rows arrive in order, a chunk is buffered and written with one explicit
  write, so the process holds one chunk, never the dataset (a memory map being filled would keep
  every written page in the writer's RSS). `MemorySink` is the same interface over one array,
  for small or built-in sources.
- Reading (`RowReader`): the rows a batch names, read with explicit reads from the file, so that
  reading the whole shard epoch after epoch never maps it into the reader's memory; the page
  cache holds it, shared and reclaimable, not the process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


class RowReader:
    """Rows of a shard (a memory map `open_shard` returned) read with explicit reads."""

    def __init__(self, shard: np.memmap):
        self.path = Path(shard.filename)
        self.offset = int(shard.offset)
        self.dtype = shard.dtype
        self.row_shape = tuple(shard.shape[1:])
        self.num_rows = shard.shape[0]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._fd: int | None = None
        self._pid: int | None = None

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked DataLoader worker opens its own
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The rows at `rows` (any order, repeats allowed), as a new in-memory array."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.num_rows):
            raise IndexError(f"rows out of range [0, {self.num_rows})")
        out = np.empty((len(rows), *self.row_shape), dtype=self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8) if len(rows) else None
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        fd = self._descriptor()
        start = 0
        while start < len(sorted_rows):
            stop = start + 1  # a run of consecutive rows is one read
            while (stop < len(sorted_rows) and stop - start < READ_RUN_ROWS
                   and sorted_rows[stop] == sorted_rows[stop - 1] + 1):  # fmt: skip
                stop += 1
            first = int(sorted_rows[start])
            data = os.pread(fd, (stop - start) * self.row_bytes, self.offset + first * self.row_bytes)
            block = np.frombuffer(data, dtype=np.uint8).reshape(stop - start, self.row_bytes)
            flat[order[start:stop]] = block
            start = stop
        return out

    def read_range(self, start: int, stop: int) -> np.ndarray:
        return self.read(np.arange(start, min(stop, self.num_rows)))

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": None}
