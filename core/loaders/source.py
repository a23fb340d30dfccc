"""What a file format's loader is given: the user's file and the load options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.dataset import Modality
from core.sample_store import SinkFactory


@dataclass(frozen=True)
class FileSource:
    path: Path
    name: str  # the dataset's name: the file name less its format suffix
    image_size: int | None
    max_pixels: int
    modality: Modality | None  # as requested, or "timeseries" for a *.ts.* file
    # Told the fraction of the file read so far (0..1), by the loaders that decode sample by sample.
    on_progress: Callable[[float], None] | None = None
    # Where the decoded samples go (`core.sample_store`): a shard on disk, or memory (None).
    sink: SinkFactory | None = None

    def progress(self, done: int, total: int) -> None:
        if self.on_progress is not None and total:
            self.on_progress(done / total)
