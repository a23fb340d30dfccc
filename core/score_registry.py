"""Every mislabel score, declared once: its name, the raw quantity it is made of, which way that
quantity is flipped, and where its per-epoch form comes from.

Scores are oriented so that HIGHER = MORE SUSPICIOUS. `sign` is applied to the raw quantity:
"-" where the raw quantity is high for clean samples (so low raw values are suspicious), "+"
where it is used as is. A score with an `epoch_field` is, at one epoch, `sign` times that
dynamics field (a `DynamicsHistory` array and a `sample_epochs` column of the same name), and
its aggregate is the mean of that over epochs; the others are aggregated by their own formula in
`core.scores`. Cross-fit scores need out-of-sample probabilities (`--cross-fit K`); a score with a
`weighting` needs a run trained with that weighting (`fbr_agreement`: `--weighting fbr`), and is
NULL for the others. `offered_score_names` says which scores a job's configuration has.

The numpy scores (`core.scores`), the stored columns (`core.store.models`), the per-epoch SQL
expressions (`core.store.queries.epoch_score`) and the README's score table all derive from
`SCORES`.
Standard library only: the light API client imports it.

`python -m core.score_registry` prints the README's score table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Score:
    name: str
    sign: Literal["+", "-"]
    quantity: str  # the raw quantity in a few words, for tables
    description: str  # the raw quantity, the flip and why, as reports show it
    epoch_field: str | None = None  # the dynamics field its per-epoch form is; None: no per-epoch form
    cross_fit: bool = False  # needs out-of-sample probabilities from cross-fitting (cleanlab)
    weighting: str | None = None  # needs a run trained with this weighting; None: any run

    def offered_by(self, config: Mapping[str, Any]) -> bool:
        """Whether a run of this configuration (`AuditConfig.to_dict()`, a job's stored config)
        has the score."""
        if self.cross_fit and not config.get("cross_fit"):
            return False
        return self.weighting is None or config.get("weighting", "lilaw") == self.weighting

    def apply_sign(self, values):
        """`values` (numpy arrays, SQL column expressions, floats) times the sign: the raw quantity
        as the score, or the score back as its raw quantity. The cleanlab scores' formulas in
        `core.scores` carry their own flip (1 - p for self-confidence)."""
        return -values if self.sign == "-" else values

    @property
    def suspicious_when(self) -> Literal["low", "high"]:
        """Which values of the raw quantity are suspicious."""
        return "low" if self.sign == "-" else "high"


SCORES: tuple[Score, ...] = (
    Score(
        "w_alpha",
        "-",
        "mean W_α = σ(α·s_y − s_max)",
        "mean W_alpha = sigmoid(alpha*s_y - s_max), negated. W_alpha is near 1 when "
        "the given label is confidently predicted and falls as s_y drops below s_max.",
        epoch_field="w_alpha",
    ),
    Score(
        "w_beta",
        "+",
        "mean W_β = σ(s_max − β·s_y)",
        "mean W_beta = sigmoid(s_max - beta*s_y), as is. By its geometry W_beta "
        "decreases monotonically in s_y, so it is largest when s_y << s_max.",
        epoch_field="w_beta",
    ),
    Score(
        "w_delta",
        "+",
        "mean W_δ = exp(−(δ·s_y − s_max)²/2)",
        "mean W_delta = exp(-(delta*s_y - s_max)^2 / 2), as is. It peaks at "
        "s_y = s_max/delta (a low s_y) and vanishes for confidently learned labels; not monotone.",
        epoch_field="w_delta",
    ),
    Score(
        "w",
        "+",
        "mean W = W_α + W_β + W_δ",
        "mean W = W_alpha + W_beta + W_delta, as is. With the default alpha, beta, "
        "delta it is larger for s_y ~ 0 than for s_y = s_max ~ 1, but it is not monotone in s_y.",
        epoch_field="w",
    ),
    Score(
        "aum",
        "-",
        "mean logit margin: logit of the given label − largest other logit (Pleiss et al.)",
        "mean logit margin (logit of the given label minus the largest other "
        "logit), negated (Pleiss et al., 2020).",
        epoch_field="margin",
    ),
    Score(
        "datamaps_confidence",
        "-",
        "mean p(label) (Swayamdipta et al.)",
        "mean probability of the given label over epochs, negated "
        "(Swayamdipta et al., 2020).",
        epoch_field="p_label",
    ),
    Score(
        "datamaps_variability",
        "-",
        "std of p(label) over epochs (Swayamdipta et al.)",
        "population standard deviation of the probability of the given label over "
        "epochs, negated (Swayamdipta et al., 2020). Measured (docs/benchmarks.md): mislabeled "
        "samples are the 'hard-to-learn' region, consistently low p, so low variability is the "
        "suspicious end; high variability marks ambiguous samples instead.",
    ),
    Score(
        "dataiq_aleatoric",
        "-",
        "mean p(1−p), p = p(label) (Seedat et al.)",
        "mean over epochs of p*(1-p), p the probability of the given label, negated "
        "(Seedat et al., 2022). It peaks at p = 0.5; mislabeled samples sit near p = 0 (Data-IQ's "
        "'hard' group: low confidence, low aleatoric uncertainty), so low is suspicious (measured).",
    ),
    Score(
        "el2n",
        "+",
        "mean ‖softmax − onehot(y)‖₂ (Paul et al.)",
        "mean EL2N = ||softmax - onehot(y)||_2 over epochs, as is (Paul et al.).",
        epoch_field="el2n",
    ),
    Score(
        "loss",
        "+",
        "mean unweighted per-sample loss",
        "mean unweighted per-sample loss over epochs, as is.",
        epoch_field="loss",
    ),
    Score(
        "forgetting",
        "+",
        "forgetting events; never-learned samples above all (Toneva et al.)",
        "number of forgetting events (correct at epoch e, wrong at e+1; correct "
        "means predicted == given label), as is; samples never correct in the window score "
        "(number of epochs + 1), above every sample that was learned (Toneva et al., 2019).",
    ),
    Score(
        "cl_self_confidence",
        "-",
        "cleanlab self-confidence: out-of-sample p(label)",
        "cleanlab self-confidence p_oos[y] on out-of-sample probabilities, "
        "reported as 1 - p_oos[y].",
        cross_fit=True,
    ),
    Score(
        "cl_normalized_margin",
        "-",
        "cleanlab normalized margin: out-of-sample p(label) − largest other p",
        "margin p_oos[y] - max_{j != y} p_oos[j] on out-of-sample probabilities, "
        "negated; cleanlab's normalized margin is (margin + 1)/2, so the ranking is the same.",
        cross_fit=True,
    ),
    Score(
        "fbr_agreement",
        "-",
        "mean FBR agreement d_i with the trusted samples of the given label (`--weighting fbr`)",
        "mean over epochs of Feature-Based Reweighting's agreement d_i, negated: how much closer "
        "the sample's penultimate features sit to the trusted samples of its given label than to "
        "those of the other classes (core.fbr). Low agreement, features that sit with another "
        "class's trusted samples, is suspicious. Only runs with weighting 'fbr' have it; NaN where "
        "the given label has no trusted sample.",
        epoch_field="fbr_agreement",
        weighting="fbr",
    ),
)

SCORE_BY_NAME: dict[str, Score] = {score.name: score for score in SCORES}
SCORE_NAMES: tuple[str, ...] = tuple(score.name for score in SCORES)
EPOCH_SCORE_NAMES: tuple[str, ...] = tuple(score.name for score in SCORES if score.epoch_field)
CLEANLAB_SCORE_NAMES: tuple[str, ...] = tuple(score.name for score in SCORES if score.cross_fit)



def offered_score_names(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The scores a run of this configuration (a job's stored config) has, in registry order."""
    return tuple(score.name for score in SCORES if score.offered_by(config))


# The shape `summary.json` and the API expose: per score, the sign and the description.
ORIENTATION: dict[str, dict[str, str]] = {
    score.name: {"sign": score.sign, "description": score.description} for score in SCORES
}


def scores_table_markdown() -> str:
    """The README's score table (section "Scores"), one row per score."""
    lines = [
        "| score | raw quantity | suspicious when | per epoch |",
        "|---|---|---|---|",
    ]
    for score in SCORES:
        quantity = f"{score.quantity} (`--cross-fit K`)" if score.cross_fit else score.quantity
        per_epoch = f"yes (`{score.epoch_field}`)" if score.epoch_field else "no"
        lines.append(f"| `{score.name}` | {quantity} | {score.suspicious_when} | {per_epoch} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(scores_table_markdown(), end="")
