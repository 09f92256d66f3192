"""load_teacher beyond the default: TorchScript, factories, timm, metadata, and every error path."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dfnas.teachers import load_teacher
from dfnas.teachers.digit_cnn import DigitCNN

FACTORY = "dfnas.teachers.digit_cnn:DigitCNN"
DIGIT_METADATA = {"input_size": [28, 28], "in_channels": 1, "mean": [0.5], "std": [0.25]}


def _save_digit_weights(path: Path, model: nn.Module | None = None) -> Path:
    state = (model or DigitCNN()).state_dict()
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    return path


def _sidecar(weights: Path, **metadata) -> None:
    weights.with_suffix(".json").write_text(json.dumps(metadata))


class _NoBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(28 * 28, 10)

    def forward(self, x):
        return self.linear(x.flatten(1))


class _SpatialOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        return self.bn(x)


@pytest.fixture
def fake_models(monkeypatch) -> str:
    """A module `fake_teacher_models` with factories for the error cases."""
    module = types.ModuleType("fake_teacher_models")
    module.no_batchnorm = _NoBatchNorm
    module.spatial_output = _SpatialOutput
    module.not_a_module = lambda: "hello"
    module.broken = lambda: 1 / 0
    monkeypatch.setitem(sys.modules, "fake_teacher_models", module)
    return "fake_teacher_models"


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_factory_with_weights_and_sidecar(tmp_path, suffix):
    model = DigitCNN().eval()
    weights = _save_digit_weights(tmp_path / f"digits{suffix}", model)
    _sidecar(weights, **DIGIT_METADATA, class_names=list("abcdefghij"), flip_ok=True, training={"ignored": 1})
    teacher = load_teacher(FACTORY, weights)
    assert teacher.info.class_names == tuple("abcdefghij") and teacher.info.flip_ok is True
    assert teacher.info.name == FACTORY and teacher.info.mean == (0.5,) and teacher.info.input_size == (28, 28)
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
    probe = torch.randn(3, 1, 28, 28)
    assert torch.equal(teacher.model(probe), model(probe))


def test_keyword_overrides_win_over_the_sidecar_and_defaults_apply(tmp_path):
    weights = _save_digit_weights(tmp_path / "digits.safetensors")
    _sidecar(weights, **DIGIT_METADATA, name="from-sidecar")
    teacher = load_teacher(FACTORY, weights, std=[0.5], input_size=32)
    assert teacher.info.std == (0.5,) and teacher.info.input_size == (32, 32) and teacher.info.name == "from-sidecar"
    assert teacher.info.class_names == tuple(str(k) for k in range(10)) and teacher.info.flip_ok is False


def test_factory_kwargs_reach_the_factory(tmp_path):
    weights = _save_digit_weights(tmp_path / "wide.safetensors", DigitCNN(num_classes=3, width=8))
    teacher = load_teacher(FACTORY, weights, **DIGIT_METADATA, factory_kwargs={"num_classes": 3, "width": 8})
    assert teacher.info.num_classes == 3


def test_nested_checkpoint_is_unwrapped(tmp_path):
    weights = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": DigitCNN().state_dict(), "epoch": 3}, weights)
    assert load_teacher(FACTORY, weights, **DIGIT_METADATA).info.num_classes == 10


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_teacher_with_sidecar(tmp_path):
    path = tmp_path / "scripted.pt"
    model = DigitCNN().eval()
    torch.jit.script(model).save(str(path))
    _sidecar(path, **DIGIT_METADATA)
    teacher = load_teacher(path)  # a Path works as well as a str
    assert teacher.info.num_classes == 10 and len(teacher.info.sha256) == 64
    assert not any(p.requires_grad for p in teacher.model.parameters())
    probe = torch.randn(2, 1, 28, 28)
    assert torch.allclose(teacher.model(probe), model(probe))
    with pytest.raises(ValueError, match="carries its own weights"):
        load_teacher(str(path), path)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_without_batchnorm_is_refused(tmp_path):
    path = tmp_path / "plain.pt"
    torch.jit.script(_NoBatchNorm()).save(str(path))
    with pytest.raises(ValueError, match="no BatchNorm2d"):
        load_teacher(str(path), **DIGIT_METADATA)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("resnet", "unknown teacher spec 'resnet'"),
        ("", "unknown teacher spec"),
        ("missing/model.pt", "TorchScript file missing/model.pt does not exist"),
    ],
)
def test_unknown_or_missing_spec(spec, message):
    with pytest.raises(ValueError, match=message):
        load_teacher(spec)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_corrupt_torchscript_file(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="corrupt or not TorchScript"):
        load_teacher(str(path), **DIGIT_METADATA)


def test_factory_needs_existing_weights(tmp_path):
    with pytest.raises(ValueError, match="needs a weights file"):
        load_teacher(FACTORY)
    with pytest.raises(ValueError, match="weights file .*nothing.safetensors does not exist"):
        load_teacher(FACTORY, tmp_path / "nothing.safetensors")


@pytest.mark.parametrize("name", ["bad.safetensors", "bad.pt"])
def test_corrupt_weights_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match=f"weights file .*{name} is corrupt"):
        load_teacher(FACTORY, tmp_path / name, **DIGIT_METADATA)


def test_pickled_objects_are_never_loaded(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"model": DigitCNN()}, path)  # a whole pickled module, not a state dict
    with pytest.raises(ValueError, match="holds pickled Python objects") as refused:
        load_teacher(FACTORY, path, **DIGIT_METADATA)
    assert "weights_only" not in str(refused.value)  # never advise the unsafe load torch suggests


def test_non_tensor_state_is_refused(tmp_path):
    path = tmp_path / "numbers.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_teacher(FACTORY, path, **DIGIT_METADATA)


def test_weights_not_matching_the_model(tmp_path):
    weights = _save_digit_weights(tmp_path / "wide.safetensors", DigitCNN(width=8))
    with pytest.raises(ValueError, match=r"do not match the model.*wrong shape"):
        load_teacher(FACTORY, weights, **DIGIT_METADATA)
    state = DigitCNN().state_dict()
    state.pop("classifier.bias")
    state["extra"] = torch.zeros(1)
    save_file(state, tmp_path / "edited.safetensors")
    with pytest.raises(ValueError, match=r"missing \['classifier.bias'\].*unexpected \['extra'\]"):
        load_teacher(FACTORY, tmp_path / "edited.safetensors", **DIGIT_METADATA)


def test_model_without_batchnorm(tmp_path, fake_models):
    save_file(_NoBatchNorm().state_dict(), tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="no BatchNorm2d layer"):
        load_teacher(f"{fake_models}:no_batchnorm", tmp_path / "plain.safetensors", **DIGIT_METADATA)


def test_output_not_batch_by_classes(tmp_path, fake_models):
    save_file(_SpatialOutput().state_dict(), tmp_path / "spatial.safetensors")
    with pytest.raises(ValueError, match=r"output on a probe input of batch 2 is \(2, 1, 28, 28\)"):
        load_teacher(f"{fake_models}:spatial_output", tmp_path / "spatial.safetensors", **DIGIT_METADATA)


def test_probe_failure_and_class_count_mismatch(tmp_path):
    weights = _save_digit_weights(tmp_path / "digits.safetensors")
    with pytest.raises(ValueError, match=r"failed on a probe input of shape \(2, 3, 28, 28\)"):
        load_teacher(FACTORY, weights, **{**DIGIT_METADATA, "in_channels": 3, "mean": [0, 0, 0], "std": [1, 1, 1]})
    with pytest.raises(ValueError, match="outputs 10 classes but its metadata says 5"):
        load_teacher(FACTORY, weights, **DIGIT_METADATA, num_classes=5)
    with pytest.raises(ValueError, match="3 class_names but num_classes 10"):
        load_teacher(FACTORY, weights, **DIGIT_METADATA, class_names=["a", "b", "c"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"mean": [0.1, 0.2]}, "mean must be 1 number"),
        ({"std": [0.0]}, "std must be positive"),
        ({"input_size": [28]}, "input_size must be"),
        ({"in_channels": 0}, "in_channels must be a positive integer"),
        ({"flip_ok": "yes"}, "flip_ok must be true or false"),
        ({"factory_kwargs": [1]}, "factory_kwargs must be a JSON object"),
    ],
)
def test_invalid_metadata(tmp_path, override, message):
    weights = _save_digit_weights(tmp_path / "digits.safetensors")
    with pytest.raises(ValueError, match=message):
        load_teacher(FACTORY, weights, **{**DIGIT_METADATA, **override})


def test_missing_metadata_names_the_sidecar(tmp_path):
    weights = _save_digit_weights(tmp_path / "digits.safetensors")
    with pytest.raises(ValueError, match=r"lacks metadata \['input_size', 'mean'\].*digits.json"):
        load_teacher(FACTORY, weights, in_channels=1, std=[1.0])
    (tmp_path / "digits.json").write_text("{broken")
    with pytest.raises(ValueError, match="digits.json is not readable JSON"):
        load_teacher(FACTORY, weights)


def test_factory_import_and_call_errors(tmp_path, fake_models):
    weights = _save_digit_weights(tmp_path / "digits.safetensors")
    with pytest.raises(ValueError, match="cannot import the factory"):
        load_teacher("no_such_module_xyz:build", weights, **DIGIT_METADATA)
    with pytest.raises(ValueError, match="cannot import the factory"):
        load_teacher("dfnas.teachers.digit_cnn:Nothing", weights, **DIGIT_METADATA)
    with pytest.raises(ValueError, match="factory .* failed: division by zero"):
        load_teacher(f"{fake_models}:broken", weights, **DIGIT_METADATA)
    with pytest.raises(ValueError, match="returned str, not a torch.nn.Module"):
        load_teacher(f"{fake_models}:not_a_module", weights, **DIGIT_METADATA)


def test_timm_missing_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(ValueError, match="needs the timm package: pip install timm"):
        load_teacher("timm:resnet18", tmp_path / "w.safetensors")


def test_timm_teacher_takes_missing_metadata_from_pretrained_cfg(monkeypatch, tmp_path):
    def create_model(name: str, pretrained: bool, **kwargs) -> nn.Module:
        assert name == "digit_cnn" and pretrained is False
        model = DigitCNN(**kwargs)
        model.pretrained_cfg = {"input_size": (1, 28, 28), "mean": (0.2,), "std": (0.4,)}
        return model

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    weights = _save_digit_weights(tmp_path / "timm.safetensors", DigitCNN(width=8))
    with pytest.raises(ValueError, match="needs a local weights file"):
        load_teacher("timm:digit_cnn")
    teacher = load_teacher("timm:digit_cnn", weights, std=[0.3], factory_kwargs={"width": 8})
    assert teacher.info.mean == (0.2,) and teacher.info.std == (0.3,) and teacher.info.input_size == (28, 28)
