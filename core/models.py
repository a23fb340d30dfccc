"""Classifier factory: small built-ins per modality, and any timm backbone by name."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from core.errors import ConfigError

MAX_MODEL_PARAMETERS = 100_000_000  # a timm backbone's parameters, checked at submit

BUILTIN_MODELS = ("small-cnn", "mlp", "cnn1d", "lstm", "linear")
_BUILTIN_MODALITY = {"small-cnn": "image", "mlp": "tabular", "cnn1d": "timeseries", "lstm": "timeseries", "linear": "tabular"}


class SmallCNN(nn.Module):
    """Three conv blocks for tiny images (8×8 digits to 64×64)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(in_channels, width),
            nn.MaxPool2d(2),
            block(width, 2 * width),
            nn.MaxPool2d(2),
            block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    def __init__(self, num_features: int, num_classes: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(num_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(inplace=True),
            nn.Linear(hidden // 2, num_classes),
        )

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[:-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LinearHead(nn.Module):
    """One linear layer over feature vectors (embeddings mode's default head)."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.head = nn.Linear(num_features, num_classes)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class CNN1d(nn.Module):
    """1-D CNN for time series [N, C, T]."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(c_in, c_out, 7, padding=3, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(in_channels, width), nn.MaxPool1d(2), block(width, 2 * width), nn.MaxPool1d(2),
            block(2 * width, 2 * width), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class StackedLSTM(nn.Module):
    """The paper's ECG5000 model: a stacked LSTM over the time axis, classifying its last state."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 64, layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(in_channels, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.transpose(1, 2))
        return out[:, -1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.penultimate(x))


def penultimate_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The features the classifier's last linear layer reads, [B, D]: a built-in's `penultimate`,
    a timm model's pooled pre-logits (`forward_head(forward_features(x), pre_logits=True)`)."""
    if hasattr(model, "penultimate"):
        return model.penultimate(x)
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True).flatten(1)
    raise ConfigError(f"{type(model).__name__} exposes no penultimate features (needed by FBR)")


def default_model_name(modality: str, input_shape: tuple[int, ...]) -> str:
    if modality == "image":
        return "small-cnn" if max(input_shape[1:]) <= 64 else "resnet18"
    if modality == "tabular":
        return "mlp"
    return "cnn1d"


def check_model(name: str, modality: str) -> None:
    """Refuse, with a ConfigError, a model name that cannot be built for data of `modality`."""
    if name in BUILTIN_MODELS:
        if _BUILTIN_MODALITY[name] != modality:
            raise ConfigError(f"model {name!r} is for {_BUILTIN_MODALITY[name]} data, but this dataset is {modality}")
        return
    import timm

    if not timm.is_model(name):
        raise ConfigError(f"unknown model {name!r}: use one of {', '.join(BUILTIN_MODELS)} or a timm model name")
    if modality != "image":
        raise ConfigError(f"timm model {name!r} needs image data; for {modality} data use one of {', '.join(BUILTIN_MODELS)}")
    parameters = timm_parameter_count(name)
    if parameters > MAX_MODEL_PARAMETERS:
        raise ConfigError(
            f"timm model {name!r} has {parameters / 1e6:.0f}M parameters; the limit is "
            f"{MAX_MODEL_PARAMETERS / 1e6:.0f}M (use a smaller backbone, or embeddings mode)"
        )


def timm_parameter_count(name: str) -> int:
    """The parameters of timm model `name` (3 input channels, its default head), counted on the
    meta device: no memory is allocated and nothing is downloaded."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return sum(parameter.numel() for parameter in model.parameters())


def build_model(
    name: str,
    modality: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
) -> nn.Module:
    """A classifier for inputs of `input_shape` (without the batch axis).

    Built-in names are listed in BUILTIN_MODELS; any other name is a timm model for images.
    `pretrained=True` loads timm's weights from the local Hugging Face cache (offline is fine
    once cached); `weights_path` loads a local .safetensors / .pth state dict instead. A head
    whose shape does not match `num_classes` is left freshly initialised.
    """
    check_model(name, modality)
    if name in BUILTIN_MODELS:
        model = _build_builtin(name, input_shape, num_classes)
    else:
        model = _build_timm(name, input_shape, num_classes, pretrained and weights_path is None)
    if weights_path is not None:
        load_weights(model, weights_path)
    return model


def _build_builtin(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if name == "small-cnn":
        return SmallCNN(input_shape[0], num_classes)
    if name == "mlp":
        return MLP(input_shape[0], num_classes)
    if name == "cnn1d":
        return CNN1d(input_shape[0], num_classes)
    if name == "linear":
        return LinearHead(input_shape[0], num_classes)
    return StackedLSTM(input_shape[0], num_classes)


def _build_timm(name: str, input_shape: tuple[int, ...], num_classes: int, pretrained: bool) -> nn.Module:
    import os

    import timm

    # Pretrained weights come from the local cache only: a worker never waits on the model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=input_shape[0])
    except Exception as exc:  # timm raises a variety of errors when weights are unreachable
        if pretrained:
            raise ConfigError(
                f"could not load pretrained weights for {name!r} ({exc}); put them in the Hugging Face cache "
                "(HF_HOME) or pass a local weights file"
            ) from exc
        raise ConfigError(f"could not build model {name!r}: {exc}") from exc


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict from a local file, keeping every tensor whose name and shape match."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise ConfigError(f"no tensor in {path.name} matches the model's parameters")
    model.load_state_dict(matching, strict=False)
