"""What every resource's bodies share: their base class, the error body and the names of the
sample splits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.column_ranges import FLOAT32_MAX, FLOAT32_UNDERFLOW, INT32_MAX

SplitName = Literal["train", "val"]

# Numbers the database cannot hold answer 422 naming the field, not a 500 from the database.


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
