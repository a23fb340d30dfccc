"""What an audit is asked to do, as plain dataclasses: LiLAW's meta-learning (`LilawConfig`), the
training (`TrainConfig`) and the audit around it (`AuditConfig`).

No torch nor numpy: the API's schemas, which the light client imports, take their defaults from
here; `core.lilaw`, `core.engine` and `core.audit` run them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from core.errors import ConfigError

# Limits on an audit's size, checked by validate() (the CLI) and by the API's schemas at submit
# (they take their bounds from here). README.md ("Limits") lists them.
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 4096
MAX_META_BATCH_SIZE = 4096
MAX_IMAGE_SIZE = 1024  # pixels per side
MAX_CROSS_FIT = 20  # folds
MAX_SEED = 2**32 - 1  # seeds are in [0, MAX_SEED], numpy's range
MAX_LR = 10.0  # learning rates (the network's and LiLAW's meta step) are finite, in (0, MAX_LR]


def _check_seed(name: str, seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} must be in [0, {MAX_SEED}], got {seed}")


# "fbr": Feature-Based Reweighting (core.fbr), which needs a trusted set (run_audit's `trusted`).
WEIGHTINGS = ("lilaw", "none", "fbr")

# Chosen by measurement (docs/benchmarks.md): the area under the margin of the LiLAW run, over
# all epochs. It matches mean W_α under uniform noise and beats it clearly under asymmetric
# noise, where W_α's sigmoid saturates and loses the ranking among confidently fitted labels.
DEFAULT_SCORE = "aum"

# How LiLAW's meta-validation split is drawn (TrainConfig.val_split). "fixed": one stratified,
# seeded split held out for the whole run (its samples are never trained on). "rotate":
# K = round(1 / val_fraction) stratified folds, epoch e holds out fold (e - 1) mod K for the meta
# steps and trains on the rest, so every sample is trained on and (over K epochs) held out. A
# trusted set is always a fixed split.
VAL_SPLITS = ("fixed", "rotate")

# What embeddings mode trains on the features: a linear layer, or core.models' MLP.
EMBEDDING_HEADS = ("linear", "mlp")


@dataclass
class LilawConfig:
    alpha: float = 10.0
    beta: float = 2.0
    delta: float = 6.0
    lr: float = 0.005
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    # Validation samples per meta step. Algorithm 1 does not fix it; the overhead benchmark
    # (benchmarks/overhead.py) shows why a small one is the default.
    meta_batch_size: int = 32
    # The paper's text states ordering constraints (α ≥ 1, β ≤ δ ≤ α) that Algorithm 1 never
    # applies. Off by default, so the default is Algorithm 1 exactly; on, each meta step ends
    # by projecting (α, β, δ) back into that region.
    clamp: bool = False
    # Algorithm 1 differentiates L_W = W(s)·ℓ through the softmax s, so W's own gradient reaches
    # the network (the default, Algorithm 1 exactly). True: W is a constant per sample in the
    # network's step (the gradient of W·ℓ is W·∂ℓ only); the meta step is the same either way.
    detach_weights: bool = False

    def validate(self) -> None:
        for name in ("clamp", "detach_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"LiLAW {name.replace('_', ' ')} must be true or false, got {getattr(self, name)!r}")
        if self.lr < 0 or self.weight_decay < 0:
            raise ConfigError("LiLAW learning rate and weight decay must be >= 0")
        if not (math.isfinite(self.lr) and self.lr <= MAX_LR):
            raise ConfigError(f"LiLAW learning rate must be finite and <= {MAX_LR}, got {self.lr}")
        if not math.isfinite(self.weight_decay):
            raise ConfigError(f"LiLAW weight decay must be finite, got {self.weight_decay}")
        if self.warmup_epochs < 0:
            raise ConfigError("warm-up epochs must be >= 0")
        if not 1 <= self.meta_batch_size <= MAX_META_BATCH_SIZE:
            raise ConfigError(f"meta batch size must be in [1, {MAX_META_BATCH_SIZE}], got {self.meta_batch_size}")


@dataclass
class FbrConfig:
    """Feature-Based Reweighting's schedule (core.fbr). The authors' CIFAR defaults (α0 = 1/(C−1)
    for 40 epochs then 0, all weights ½ for the first 10 epochs of a long run) scaled to audits of
    a few epochs: α0 = 1/(C−1) throughout, all weights ½ for the first epoch only (as LiLAW's
    one warm-up epoch)."""

    alpha0: float | None = None  # None: 1/(C−1)
    alpha0_epochs: int | None = None  # epochs with α0, 0 after them; None: every epoch
    warmup_epochs: int = 1  # epochs in which every weight is ½ (features not yet meaningful)

    def validate(self) -> None:
        if self.alpha0 is not None and self.alpha0 < 0:
            raise ConfigError(f"FBR's alpha0 must be >= 0, got {self.alpha0}")
        if self.alpha0_epochs is not None and self.alpha0_epochs < 0:
            raise ConfigError("FBR's alpha0 epochs must be >= 0")
        if self.warmup_epochs < 0:
            raise ConfigError("FBR's warm-up epochs must be >= 0")


@dataclass
class TrainConfig:
    model: str | None = None  # None: the modality's default (see core.models.default_model_name)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weighting: str = "lilaw"
    loss: str = "ce"
    focal_gamma: float = 2.0
    val_fraction: float = 0.1
    val_split: str = "fixed"  # one of VAL_SPLITS
    seed: int = 0
    lilaw: LilawConfig = field(default_factory=LilawConfig)
    fbr: FbrConfig = field(default_factory=FbrConfig)
    pretrained: bool = False
    weights_path: str | None = None
    image_size: int | None = None  # resize images on the fly (e.g. 224 for a pretrained backbone)
    device: str | None = None  # None: CUDA when available, else CPU
    progress_every: int = 20  # steps between progress callbacks
    # Images only: each training batch is a random view (4-pixel-padded random crop and a
    # horizontal flip); validation, test and meta batches stay unaugmented. Other modalities
    # ignore it.
    augment: bool = False
    # Off only where nobody reads the dynamics (cross-fitting, the plain-training baseline of
    # benchmarks/overhead.py); fit() then returns no history.
    record_dynamics: bool = True

    def validate(self) -> None:
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise ConfigError(f"epochs must be in [1, {MAX_EPOCHS}], got {self.epochs}")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(f"batch size must be in [1, {MAX_BATCH_SIZE}], got {self.batch_size}")
        if not (0 < self.lr <= MAX_LR):  # NaN fails too
            raise ConfigError(f"learning rate must be in (0, {MAX_LR}], got {self.lr}")
        if self.image_size is not None and not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"image size must be in [1, {MAX_IMAGE_SIZE}], got {self.image_size}")
        _check_seed("seed", self.seed)
        if not isinstance(self.augment, bool):
            raise ConfigError(f"augment must be true or false, got {self.augment!r}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown weighting {self.weighting!r}: use one of {WEIGHTINGS}")
        if self.loss not in ("ce", "focal"):
            raise ConfigError(f"unknown loss {self.loss!r}: use 'ce' or 'focal'")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"validation fraction must be in [0, 1), got {self.val_fraction}")
        if self.weighting == "lilaw" and self.val_fraction == 0:
            raise ConfigError("LiLAW needs a validation split: set a validation fraction > 0")
        if self.val_split not in VAL_SPLITS:
            raise ConfigError(f"unknown validation split {self.val_split!r}: use one of {VAL_SPLITS}")
        if self.val_split == "rotate" and 0 < self.val_fraction and round(1 / self.val_fraction) < 2:
            raise ConfigError("a rotating validation split needs a validation fraction <= 2/3 (K >= 2 folds)")
        self.lilaw.validate()
        self.fbr.validate()


@dataclass
class AuditConfig(TrainConfig):
    inject_noise: str | None = None  # "KIND:RATE", e.g. "uniform:0.3" (evaluation only)
    noise_seed: int | None = None  # None: the audit's seed
    cross_fit: int = 0  # K > 1: K-fold out-of-sample probabilities for confident learning
    default_score: str = DEFAULT_SCORE
    # (first, last) epochs, 1-based and inclusive, that the aggregated scores average over;
    # None = every epoch, the warm-up epoch included (it measured best, docs/benchmarks.md).
    score_epochs: tuple[int, int | None] | None = None
    # True: every aggregated score of a held-out group is mapped by its quantile within the group
    # onto the trained samples' values (core.scores.calibrate_within_groups) before it is ranked
    # and stored, so that a sample scored out of sample does not outrank an equally suspicious
    # trained one because of its split.
    # Chosen by measurement (docs/benchmarks.md, "Split bias"): it removes the validation split's
    # excess in the top of the ranking at no cost in AUROC/AUPRC and changes no training; the
    # rotating split (val_split="rotate") only halves the excess.
    split_calibration: bool = True
    # Embeddings mode (core.embeddings): a frozen timm backbone, with the weights of a local file,
    # computes every image's features once (cached); the audit trains `embeddings_head` on them.
    embeddings_backbone: str | None = None
    embeddings_weights: str | None = None
    embeddings_head: str = "linear"  # one of EMBEDDING_HEADS

    def validate(self) -> None:
        super().validate()
        self._validate_embeddings()
        if not isinstance(self.split_calibration, bool):
            raise ConfigError(f"split calibration must be true or false, got {self.split_calibration!r}")
        if self.inject_noise:
            from core.noise import parse_noise_spec  # imports numpy, which the light client must not

            parse_noise_spec(self.inject_noise)
        if self.cross_fit == 1 or self.cross_fit < 0:
            raise ConfigError(f"cross-fit needs K >= 2 folds (or 0 for none), got {self.cross_fit}")
        if self.cross_fit > MAX_CROSS_FIT:
            raise ConfigError(f"cross-fit takes at most {MAX_CROSS_FIT} folds, got {self.cross_fit}")
        if self.noise_seed is not None:
            _check_seed("noise seed", self.noise_seed)

    def _validate_embeddings(self) -> None:
        if self.embeddings_head not in EMBEDDING_HEADS:
            raise ConfigError(f"unknown embeddings head {self.embeddings_head!r}: use one of {EMBEDDING_HEADS}")
        if not self.embeddings_backbone:
            return
        if not self.embeddings_weights:
            raise ConfigError("embeddings mode needs the backbone's weights: a local .safetensors/.pth file")
        if self.model is not None or self.pretrained or self.weights_path:
            raise ConfigError("in embeddings mode the model is the head (embeddings_head); leave model and weights unset")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AuditConfig:
        values = dict(values)
        lilaw = LilawConfig(**values.pop("lilaw", {}))
        fbr = FbrConfig(**values.pop("fbr", {}))
        if values.get("score_epochs") is not None:
            values["score_epochs"] = tuple(values["score_epochs"])
        return cls(lilaw=lilaw, fbr=fbr, **values)
