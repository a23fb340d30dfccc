"""What a finished (or running) job shows: ranked suspects in any score's order and one sample's
dynamics (`suspects`), detection metrics against the known flags (`metrics`) and their charts
(`charts`), the score table for downloads and the trained model's file (`exports`).

Scores are oriented higher = more suspicious (`core.score_registry`).
"""

from core.services.results.charts import DetectionCharts, detection_charts
from core.services.results.exports import model_path, score_table_chunks, score_table_columns
from core.services.results.metrics import (
    NoKnownFlagsError,
    current_metrics,
    job_metrics,
    recompute_metrics,
    require_scores,
)
from core.services.results.suspects import (
    RankedSuspect,
    SampleHistory,
    SuspectPage,
    count_suspects,
    default_score,
    sample_history,
    suspects_page,
)

__all__ = [
    "DetectionCharts",
    "NoKnownFlagsError",
    "RankedSuspect",
    "SampleHistory",
    "SuspectPage",
    "count_suspects",
    "current_metrics",
    "default_score",
    "detection_charts",
    "job_metrics",
    "model_path",
    "recompute_metrics",
    "require_scores",
    "sample_history",
    "score_table_chunks",
    "score_table_columns",
    "suspects_page",
]
