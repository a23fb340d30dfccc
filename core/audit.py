"""An audit end to end: optional noise injection, LiLAW training, scores, ranks and metrics.

This is what the CLI and the Celery worker call, the one place noise is injected. It returns
plain arrays and dicts; persisting them is the caller's business.

Cancellation: `should_stop` (a plain callable; the caller decides what it asks) is checked at
every training step of the audit and of each cross-fit fold, between folds and before each phase
after training (scoring with cleanlab, test metrics); when it says so, `AuditCancelled` is raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from core.audit_config import AuditConfig
from core.checkpoints import WarmStart
from core.dataset import AuditDataset
from core.dynamics import SPLIT_TRAIN, DynamicsHistory, EpochDynamics
from core.embeddings import for_embeddings
from core.engine import AuditCancelled, Progress, Trainer, TrainConfig
from core.errors import ConfigError, DatasetError
from core.metrics import classifier_metrics, detection_report
from core.noise import apply_noise, parse_noise_spec
from core.scores import calibrate_within_groups, compute_scores, epoch_scores, rank_scores, split_groups


@dataclass(frozen=True)
class NoisyLabels:
    """What injected noise made of an audit's labels, by sample index."""

    labels: np.ndarray  # int64 [N], the labels the audit trains on
    is_mislabeled: np.ndarray  # bool [N], those the noise changed
    true_labels: np.ndarray  # int64 [N], the labels before the noise


@dataclass
class AuditResult:
    dataset: AuditDataset  # after noise injection
    noisy_labels: NoisyLabels | None  # None without injected noise
    config: AuditConfig
    model_name: str
    history: DynamicsHistory
    split: np.ndarray
    trajectory: np.ndarray  # [S, 5]: step, epoch, alpha, beta, delta
    scores: dict[str, np.ndarray]
    default_score: str
    rank: np.ndarray  # 1 = most suspicious
    detection: dict | None  # aggregate, per epoch and train-only detection metrics, when flags are known
    test_metrics: dict | None
    oos_probs: np.ndarray | None
    timings: dict[str, float]
    device: str
    model: object = field(repr=False)
    # weighting="fbr": the engine's per-sample FBR arrays [E, N] ("fbr_agreement", "fbr_weight";
    # see core.engine.TrainResult). The agreement is also a dynamics field and the `fbr_agreement` score.
    fbr: dict[str, np.ndarray] | None = field(default=None, repr=False)
    trusted: dict[int, int] | None = field(default=None, repr=False)  # the trusted set the audit used
    # float32 [N, C]: the class probabilities behind the last epoch's `predicted` (see
    # core.engine.TrainResult.final_probs); what reviewers' suggestions are read from.
    final_probs: np.ndarray | None = field(default=None, repr=False)

    @property
    def default_scores(self) -> np.ndarray:
        return self.scores[self.default_score]

    @property
    def fbr_agreement_score(self) -> np.ndarray | None:
        """−(mean FBR agreement over the recorded epochs), higher = more suspicious (the sample's
        features sit with another class's trusted samples); NaN where it is undefined."""
        if self.fbr is None:
            return None
        d = self.fbr["fbr_agreement"].astype(np.float64)
        finite = np.isfinite(d)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(finite, d, 0.0).sum(0) / finite.sum(0)
        return -mean


ShouldStop = Callable[[], bool]


def prepare_dataset(dataset: AuditDataset, config: AuditConfig, should_stop: ShouldStop | None = None) -> AuditDataset:
    """Inject the requested evaluation noise (seeded; the clean labels are kept as ground truth)."""
    if not config.inject_noise:
        return dataset
    kind, rate = parse_noise_spec(config.inject_noise)
    seed = config.seed if config.noise_seed is None else config.noise_seed
    probs = _confusion_probabilities(dataset, config, should_stop) if kind == "instance" and rate > 0 else None
    return apply_noise(dataset, kind, rate, seed, probs=probs)


def _with_noise(
    dataset: AuditDataset, config: AuditConfig, given: NoisyLabels | None, should_stop: ShouldStop | None = None
) -> tuple[AuditDataset, NoisyLabels | None]:
    """The dataset with the configured noise, the `given` labels or drawn ones, and those labels."""
    if not config.inject_noise:
        return dataset, None
    if given is None:
        noisy = prepare_dataset(dataset, config, should_stop)
        return noisy, NoisyLabels(noisy.y, noisy.is_mislabeled, noisy.true_labels)
    if len(given.labels) != len(dataset):
        raise DatasetError(f"the noisy labels given hold {len(given.labels)} labels for {len(dataset)} samples")
    return replace(dataset, y=given.labels, is_mislabeled=given.is_mislabeled, true_labels=given.true_labels), given


def _confusion_probabilities(dataset: AuditDataset, config: AuditConfig, should_stop: ShouldStop | None) -> np.ndarray:
    """Which classes a model confuses each sample with: out-of-sample probabilities of a short
    plain run on the clean labels (2-fold, 2 epochs). Instance-dependent noise flips towards them."""
    quick = replace(config, epochs=min(2, config.epochs), weighting="none", val_fraction=0.0, inject_noise=None, cross_fit=0)
    return cross_fit_probabilities(dataset, quick, folds=2, should_stop=should_stop)


def cross_fit_probabilities(
    dataset: AuditDataset,
    config: TrainConfig,
    folds: int,
    on_fold: Callable[[int], None] | None = None,
    should_stop: ShouldStop | None = None,
) -> np.ndarray:
    """Out-of-sample softmax probabilities: K models, each trained with plain loss on K−1 folds.
    `on_fold(k)` is called before fold k (1-based) starts; `should_stop` is asked at every
    training step of every fold and before each fold (`AuditCancelled`)."""
    fold_of = _stratified_folds(dataset.y, folds, config.seed)
    probs = np.zeros((len(dataset), dataset.num_classes), dtype=np.float32)
    for fold in range(folds):
        _check(should_stop, f"before cross-fit fold {fold + 1} of {folds}")
        if on_fold:
            on_fold(fold + 1)
        held_out = np.flatnonzero(fold_of == fold)
        fold_config = replace(config, weighting="none", val_fraction=0.0, seed=config.seed + fold, record_dynamics=False)
        trainer = Trainer(dataset.subset(np.flatnonzero(fold_of != fold)), fold_config)
        trainer.fit(should_stop=should_stop)
        probs[held_out] = trainer.predict_proba(dataset.x[held_out])
    return probs


def _check(should_stop: ShouldStop | None, where: str) -> None:
    if should_stop is not None and should_stop():
        raise AuditCancelled(f"stopped {where}")


def _stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        fold_of[members] = np.arange(len(members)) % folds
    return fold_of


def run_audit(
    dataset: AuditDataset,
    config: AuditConfig,
    *,
    on_epoch: Callable[[EpochDynamics], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    checkpoint_path: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
    warm_start: WarmStart | None = None,
    noisy_labels: NoisyLabels | None = None,
    on_noise: Callable[[NoisyLabels], None] | None = None,
    trusted: dict[int, int] | None = None,
    on_stage: Callable[[str], None] | None = None,
    embeddings_dir: Path | None = None,
) -> AuditResult:
    """`warm_start`: begin from a previous audit's model and final α, β, δ (see core.engine.Trainer).

    With `config.inject_noise` the audit trains on `noisy_labels` when given (those an interrupted
    run of the same audit drew: resumed from its checkpoint, it must train on the same labels),
    else on labels it draws, which it hands to `on_noise` before training starts.

    `trusted` ({sample index: trusted label}): samples whose labels are trusted (reviewers'
    verdicts). They become the validation split, held out from training (the validation fraction
    is then not used): LiLAW's meta steps read them with their trusted labels, and FBR
    (`weighting="fbr"`, which needs them) uses them as its clean set.

    `on_stage(text)` is told each phase as it starts ("training", "cross-fitting: fold 2 of 5",
    "scoring", ...); `should_stop`: see the module's docstring.

    `config.embeddings_backbone`: the model is a head trained on the backbone's features, cached
    in `embeddings_dir` (see core.embeddings.for_embeddings)."""
    config.validate()
    stage = on_stage or (lambda _text: None)
    timings: dict[str, float] = {}
    train_config = config
    if config.embeddings_backbone:  # the model is a head over the backbone's (cached) features
        started = time.perf_counter()
        stage("computing embeddings")
        dataset, train_config = for_embeddings(
            dataset, config, embeddings_dir, on_batch=lambda done, total: stage(f"computing embeddings: {done} of {total}")
        )
        timings["embeddings_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    if config.inject_noise and noisy_labels is None:
        stage("injecting noise")
    dataset, noisy = _with_noise(dataset, train_config, noisy_labels, should_stop)
    if noisy is not None and noisy_labels is None and on_noise:
        on_noise(noisy)
    timings["noise_seconds"] = time.perf_counter() - started

    stage("training")
    trainer = Trainer(dataset, train_config, warm_start=warm_start, trusted=trusted)
    trained = trainer.fit(on_epoch=on_epoch, on_progress=on_progress, checkpoint_path=checkpoint_path, should_stop=should_stop)
    timings["train_seconds"] = float(sum(trained.epoch_seconds))

    oos_probs = None
    if config.cross_fit:
        started = time.perf_counter()
        folds = config.cross_fit
        oos_probs = cross_fit_probabilities(
            dataset, train_config, folds, should_stop=should_stop,
            on_fold=lambda k: stage(f"cross-fitting: fold {k} of {folds}"),
        )  # fmt: skip
        timings["cross_fit_seconds"] = time.perf_counter() - started

    _check(should_stop, "before scoring")
    stage("scoring")
    first, last = config.score_epochs or (1, None)
    scores = compute_scores(trained.history, first_epoch=first, last_epoch=last, oos_probs=oos_probs, labels=dataset.y)
    if config.split_calibration:  # held-out samples' scores on the trained samples' scale
        scores = calibrate_within_groups(scores, split_groups(trained.history, first, last))
    if config.default_score not in scores:
        raise ConfigError(f"default score {config.default_score!r} is not available (have {sorted(scores)})")
    rank = rank_scores(scores[config.default_score])

    detection = None
    if dataset.is_mislabeled is not None:
        detection = detection_summary(trained.history, scores, dataset.is_mislabeled, trained.split)

    test_metrics = None
    if dataset.test is not None:
        _check(should_stop, "before the test metrics")
        stage("test metrics")
        test_metrics = classifier_metrics(trainer.predict_proba(dataset.test.x), dataset.test.y)

    return AuditResult(
        dataset=dataset, noisy_labels=noisy, config=config, model_name=trained.model_name, history=trained.history,
        split=trained.split, trajectory=trained.trajectory, scores=scores, default_score=config.default_score,
        rank=rank, detection=detection, test_metrics=test_metrics, oos_probs=oos_probs, timings=timings,
        device=trained.device, model=trained.model, fbr=trained.fbr, trusted=trusted,
        final_probs=trained.final_probs,
    )


def detection_summary(history: DynamicsHistory, scores: dict[str, np.ndarray], is_mislabeled: np.ndarray,
                      split: np.ndarray) -> dict:
    """Detection metrics of every aggregated score (all samples and train split only, when it
    holds any) and of every per-epoch score."""
    train = split == SPLIT_TRAIN
    return {
        "aggregate": detection_report(scores, is_mislabeled),
        "aggregate_train_only": detection_report(scores, is_mislabeled, mask=train) if train.any() else {},
        "per_epoch": {
            int(epoch): detection_report(epoch_scores(history, int(epoch)), is_mislabeled)
            for epoch in history.epochs
        },
    }
