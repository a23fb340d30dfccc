"""Tables streamed as CSV, Parquet or a JSON array, one chunk of rows at a time.

A CSV cell is text a spreadsheet may run as a formula: one that begins with =, +, -, @, a tab or
a carriage return (a sample id or label of an upload, say `=HYPERLINK(...)`) is written with a
single quote in front, as OWASP recommends against CSV injection. Parquet and JSON stay raw."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

TEXT_COLUMNS = ("sample_id", "given_label", "predicted_label", "split")
INTEGER_COLUMNS = ("rank", "sample_index")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """`value`, a text that a spreadsheet would take for a formula escaped with a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_bytes(columns: list[str], chunks: Iterable[list[dict]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    # RFC 4180's CRLF: a cell holding a CR or LF is then quoted on every Python (3.11 quotes only
    # the characters of the line terminator), so an id with a carriage return cannot split a row.
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    for chunk in chunks:
        writer.writerows({column: csv_cell(value) for column, value in row.items()} for row in chunk)
        yield _drain_text(buffer)
    yield _drain_text(buffer)


def json_array_bytes(chunks: Iterable[list[dict]]) -> Iterator[bytes]:
    """One JSON array, the objects of each chunk sent together."""
    yield b"["
    separator = b""
    for chunk in chunks:
        if chunk:
            yield separator + ",\n".join(json.dumps(item, separators=(",", ":")) for item in chunk).encode()
            separator = b",\n"
    yield b"]\n"


def parquet_bytes(columns: list[str], chunks: Iterable[list[dict]]) -> Iterator[bytes]:
    """One row group per chunk; the bytes of each are sent as soon as it is written."""
    schema = pa.schema([(column, _arrow_type(column)) for column in columns])
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, schema) as writer:
        for chunk in chunks:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            yield _drain_bytes(sink)
    yield _drain_bytes(sink)


def _arrow_type(column: str) -> pa.DataType:
    if column in TEXT_COLUMNS:
        return pa.string()
    if column in INTEGER_COLUMNS:
        return pa.int64()
    if column == "known_mislabeled":
        return pa.bool_()
    return pa.float64()


def _drain_text(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


def _drain_bytes(buffer: io.BytesIO) -> bytes:
    data = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return data
