"""The kinds of data an audit works on. Standard library only: the API's schemas (which the
light client imports) name them too."""

from typing import Literal

Modality = Literal["image", "tabular", "timeseries"]
