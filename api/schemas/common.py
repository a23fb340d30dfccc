"""What every resource's bodies share: their base class, the error body and the names of the
sample splits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

SplitName = Literal["train", "val"]


class Schema(BaseModel):
    """A request or response body."""

    # Validators are built on first use, not at import: the light client imports every schema
    # and uses a few (building them all would double its import time).
    model_config = ConfigDict(defer_build=True)


class ErrorPublic(Schema):
    detail: str
