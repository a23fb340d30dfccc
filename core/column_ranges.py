"""What the database's numeric columns can hold, on SQLite and Postgres alike: integers (ids,
versions, ranks, sample indexes, epochs) are 32-bit on Postgres, scores are REAL (float32). A
number outside these ranges cannot match a row, and Postgres would fail on it, so the API's
parameters and the page cursors are checked against them. Standard library only: the light
client's schemas import it."""

INT32_MAX = 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_UNDERFLOW = 2.0**-150  # a magnitude this small or smaller rounds to 0 as a float32
