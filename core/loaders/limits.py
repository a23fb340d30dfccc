"""The memory budget of reading one dataset file: every bound here is checked from sizes that a
file declares before the bytes are read or decoded (zip member sizes, image headers, .npy
headers, Parquet metadata), so that a small upload cannot make the reader allocate much more than
these. Together they keep one upload's parse under about 1 GB of extra memory.

- MAX_MEMBER_BYTES: one zip member (an image file), read into memory whole.
- MAX_LABELS_CSV_BYTES: a zip's labels.csv, parsed by pandas (about 10x its size in memory).
- MAX_IMAGE_PIXELS: one image, from its header, before it is decoded.
- MAX_DECODED_IMAGE_BYTES: all decoded images of an archive together (width x height x bytes
  per pixel of their mode), before each is decoded.
- MAX_TABLE_BYTES: a CSV/TSV file (pandas takes several times its size); MAX_PARQUET_BYTES the
  uncompressed size of a Parquet file's data, from its metadata.
- MAX_ARRAY_BYTES: the arrays of an .npz together, from their .npy headers, which must also
  match the bytes the archive holds for them.
"""

from __future__ import annotations

MiB = 1024**2

MAX_MEMBER_BYTES = 64 * MiB
MAX_LABELS_CSV_BYTES = 32 * MiB
MAX_IMAGE_PIXELS = 40_000_000
MAX_DECODED_IMAGE_BYTES = 250_000_000
MAX_TABLE_BYTES = 128 * MiB
MAX_PARQUET_BYTES = 512 * MiB
MAX_ARRAY_BYTES = 512 * MiB
