"""Model factory: built-ins per modality, timm backbones by name, local pretrained weights."""

import pytest
import torch
from safetensors.torch import save_file

from core.errors import ConfigError
from core.models import build_model, check_model, default_model_name, penultimate_features


@pytest.mark.parametrize(
    ("name", "modality", "shape"),
    [("small-cnn", "image", (1, 8, 8)), ("small-cnn", "image", (3, 28, 28)), ("mlp", "tabular", (20,)),
     ("cnn1d", "timeseries", (1, 140)), ("lstm", "timeseries", (2, 50)), ("resnet18", "image", (3, 32, 32))],
)
def test_models_map_a_batch_to_class_logits(name, modality, shape):
    model = build_model(name, modality, shape, num_classes=7)
    assert model(torch.randn(4, *shape)).shape == (4, 7)


@pytest.mark.parametrize(
    ("name", "modality", "shape"),
    [("small-cnn", "image", (1, 8, 8)), ("mlp", "tabular", (20,)), ("cnn1d", "timeseries", (1, 140)),
     ("lstm", "timeseries", (2, 50)), ("resnet18", "image", (3, 32, 32))],
)
def test_penultimate_features_are_what_the_last_layer_reads(name, modality, shape):
    model = build_model(name, modality, shape, num_classes=7).eval()
    x = torch.randn(3, *shape)
    with torch.no_grad():
        features = penultimate_features(model, x)
        head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "head", None) or model.net[-1]
        assert features.ndim == 2 and features.shape[0] == 3
        assert torch.allclose(head(features), model(x), atol=1e-5)


def test_default_model_follows_the_modality_and_image_size():
    assert default_model_name("image", (1, 28, 28)) == "small-cnn"
    assert default_model_name("image", (3, 224, 224)) == "resnet18"
    assert default_model_name("tabular", (12,)) == "mlp"
    assert default_model_name("timeseries", (1, 140)) == "cnn1d"


@pytest.mark.parametrize(
    ("name", "modality", "message"),
    [("no-such-net", "image", "unknown model"), ("resnet18", "tabular", "needs image data"),
     ("mlp", "image", "is for tabular data"), ("vit_huge_patch14_224", "image", "the limit is 100M")],
)
def test_unusable_model_names_are_refused(name, modality, message):
    with pytest.raises(ConfigError, match=message):
        check_model(name, modality)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_load_into_the_backbone_and_leave_a_new_head(tmp_path, suffix):
    source = build_model("resnet18", "image", (3, 32, 32), num_classes=1000)
    path = tmp_path / f"resnet18{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)

    model = build_model("resnet18", "image", (3, 32, 32), num_classes=5, weights_path=path)
    loaded = model.state_dict()
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])
    assert torch.equal(loaded["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"])
    assert loaded["fc.weight"].shape == (5, 512)  # the 1000-class head does not fit and is not loaded


def test_missing_or_foreign_weights_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_model("small-cnn", "image", (1, 8, 8), 3, weights_path=tmp_path / "nope.pth")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"something.else": torch.zeros(3)}, str(foreign))
    with pytest.raises(ConfigError, match="matches"):
        build_model("small-cnn", "image", (1, 8, 8), 3, weights_path=foreign)
