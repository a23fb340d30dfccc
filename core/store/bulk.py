"""Bulk inserts of rows given column-wise as numpy arrays: Postgres binary COPY, SQLite executemany.

Column values are cast to the table column's type (SMALLINT, INTEGER, BIGINT, REAL, DOUBLE);
NaN in a float column is stored as NULL on both backends.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sqlalchemy import REAL, BigInteger, Connection, Double, Integer, SmallInteger, Table
from sqlalchemy.types import TypeEngine

ColumnValues = np.ndarray | int | float

COPY_CHUNK_ROWS = 1 << 18

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)

# Checked in order: SmallInteger and BigInteger are Integer subclasses.
_WIRE_TYPES: tuple[tuple[type[TypeEngine], str], ...] = (
    (SmallInteger, ">i2"),
    (BigInteger, ">i8"),
    (Integer, ">i4"),
    (REAL, ">f4"),
    (Double, ">f8"),
)


def insert_columns(connection: Connection, table: Table, columns: Mapping[str, ColumnValues]) -> int:
    """Insert one row per element of the array columns (scalars repeat on every row); returns the
    number of rows. Runs in the connection's current transaction, beginning one if needed."""
    names = list(columns)
    arrays = _as_arrays(table, columns)
    if not connection.in_transaction():
        connection.begin()
    num_rows = len(arrays[0])
    if num_rows == 0:
        return 0
    if connection.dialect.name == "postgresql":
        _copy_binary(connection, table.name, names, arrays)
    else:
        _execute_many(connection, table.name, names, arrays)
    return num_rows


def _as_arrays(table: Table, columns: Mapping[str, ColumnValues]) -> list[np.ndarray]:
    lengths = {name: len(values) for name, values in columns.items() if np.ndim(values) == 1}
    if not lengths:
        raise ValueError("at least one column must be an array")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns differ in length: {lengths}")
    num_rows = next(iter(lengths.values()))
    arrays = []
    for name, values in columns.items():
        if name not in table.columns:
            raise ValueError(f"table {table.name} has no column {name!r}")
        if np.ndim(values) > 1:
            raise ValueError(f"column {name!r} must be 1-D or a scalar, got shape {np.shape(values)}")
        dtype = np.dtype(_wire_type(table.columns[name].type))
        arrays.append(np.broadcast_to(np.asarray(values).astype(dtype, copy=False), (num_rows,)))
    return arrays


def _wire_type(column_type: TypeEngine) -> str:
    for sql_type, wire_type in _WIRE_TYPES:
        if isinstance(column_type, sql_type):
            return wire_type
    raise TypeError(f"no bulk encoding for column type {column_type!r}")


def _copy_binary(connection: Connection, table: str, names: list[str], arrays: list[np.ndarray]) -> None:
    nulls = [np.isnan(array) if array.dtype.kind == "f" else None for array in arrays]
    nulls = [null if null is not None and null.any() else None for null in nulls]
    cursor = connection.connection.driver_connection.cursor()
    try:
        with cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_COPY_HEADER)
            for start in range(0, len(arrays[0]), COPY_CHUNK_ROWS):
                rows = slice(start, start + COPY_CHUNK_ROWS)
                copy.write(
                    _binary_rows([a[rows] for a in arrays], [None if m is None else m[rows] for m in nulls])
                )
            copy.write(_COPY_TRAILER)
    finally:
        cursor.close()


def _binary_rows(arrays: list[np.ndarray], nulls: list[np.ndarray | None]) -> bytes:
    """Rows in COPY BINARY layout: a field count, then per field its byte length (-1 for NULL)
    and its big-endian value. Built as one numpy record per row; NULL values are cut out."""
    fields = [("count", ">i2")]
    for i, array in enumerate(arrays):
        fields += [(f"size{i}", ">i4"), (f"value{i}", array.dtype)]
    layout = np.dtype(fields)
    rows = np.empty(len(arrays[0]), layout)
    rows["count"] = len(arrays)
    for i, array in enumerate(arrays):
        rows[f"size{i}"] = array.dtype.itemsize
        rows[f"value{i}"] = array
    if all(null is None for null in nulls):
        return rows.tobytes()
    keep = np.ones((len(rows), layout.itemsize), dtype=bool)
    for i, null in enumerate(nulls):
        if null is not None:
            rows[f"size{i}"][null] = -1
            offset = layout.fields[f"value{i}"][1]
            keep[null, offset : offset + arrays[i].dtype.itemsize] = False
    return rows.view(np.uint8).reshape(len(rows), layout.itemsize)[keep].tobytes()


def _execute_many(connection: Connection, table: str, names: list[str], arrays: list[np.ndarray]) -> None:
    columns = [array.tolist() for array in arrays]
    statement = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.executemany(statement, zip(*columns))
    finally:
        cursor.close()
