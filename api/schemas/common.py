"""What every resource's bodies share: their base class, the error body and the names of the
sample splits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SplitName = Literal["train", "val"]

# What the database can hold, on SQLite and Postgres alike: its integer columns (ids, versions,
# sample indexes, epochs) are 32-bit on Postgres, its score columns REAL (float32). A number out
# of these ranges cannot match a row; the API answers 422 naming the field rather than let the
# database fail with a 500.
INT32_MAX = 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_UNDERFLOW = 2.0**-150  # a magnitude this small or smaller rounds to 0 as a float32


def _float32_representable(value: float | None) -> float | None:
    """Reject a non-zero value that a REAL column would underflow to 0 (Postgres errors on it)."""
    if value is not None and value != 0 and abs(value) <= FLOAT32_UNDERFLOW:
        raise ValueError("must be 0 or a number that float32 holds (it underflows to 0)")
    return value


DbId = Annotated[int, Field(ge=1, le=INT32_MAX)]  # a row's id, a dataset version or an epoch
SampleIndex = Annotated[int, Field(ge=0, le=INT32_MAX)]
ScoreValue = Annotated[
    float,
    Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX, allow_inf_nan=False),
    AfterValidator(_float32_representable),
]  # a finite score filter within float32's range


class Schema(BaseModel):
    """A request or response body."""

    # Validators are built on first use, not at import: the light client imports every schema
    # and uses a few (building them all would double its import time).
    model_config = ConfigDict(defer_build=True)


class ErrorPublic(Schema):
    detail: str
