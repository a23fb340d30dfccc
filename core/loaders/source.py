"""What a file format's loader is given: the user's file and the load options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.dataset import Modality


@dataclass(frozen=True)
class FileSource:
    path: Path
    name: str  # the dataset's name: the file name less its format suffix
    image_size: int | None
    max_pixels: int
    modality: Modality | None  # as requested, or "timeseries" for a *.ts.* file
