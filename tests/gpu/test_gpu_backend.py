"""Backend selection: CPU tensors -> C++ CPU kernels; CUDA tensors -> CUDA C++ (if built) >
Triton (if importable) > eager reference, unless a backend is requested."""
import itertools

import pytest
import torch

import dfnas.ops
from dfnas.ops import _backend

schemas = dfnas.ops.load()  # torch.ops.dfnas: the op schemas, called directly


@pytest.mark.parametrize("requested", _backend.BACKENDS)
@pytest.mark.parametrize("cuda_built,triton_available", list(itertools.product([True, False], repeat=2)))
def test_cpu_tensors_always_use_the_cpu_kernels(requested, cuda_built, triton_available):
    assert _backend.choose("cpu", requested, cuda_built=cuda_built, triton_available=triton_available) == "cpu"


@pytest.mark.parametrize(
    "cuda_built,triton_available,expected",
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "triton"), (False, False, "reference")],
)
def test_auto_prefers_cuda_then_triton_then_reference(cuda_built, triton_available, expected):
    assert _backend.choose("cuda", "auto", cuda_built=cuda_built, triton_available=triton_available) == expected


@pytest.mark.parametrize("requested", ["cuda", "triton", "reference"])
def test_an_available_request_is_honoured(requested):
    assert _backend.choose("cuda", requested, cuda_built=True, triton_available=True) == requested


def test_unavailable_or_unknown_requests_raise():
    # The whole messages of the unavailable backends: they say how to get one (issue 15).
    with pytest.raises(RuntimeError) as error:
        _backend.choose("cuda", "cuda", cuda_built=False, triton_available=True)
    assert str(error.value) == ("dfnas backend 'cuda': the C++ CUDA kernels were not built (dfnas was installed with a "
                                "CPU build of torch or without nvcc); use 'triton' or 'reference'")
    with pytest.raises(RuntimeError) as error:
        _backend.choose("cuda", "triton", cuda_built=True, triton_available=False)
    assert str(error.value) == "dfnas backend 'triton': triton is not installed (pip install 'dfnas[triton]')"
    with pytest.raises(ValueError, match="must be one of"):
        _backend.choose("cuda", "fastest", cuda_built=True, triton_available=True)
    with pytest.raises(ValueError, match="no kernels"):
        _backend.choose("mps", "auto", cuda_built=True, triton_available=True)


def test_environment_variable():
    assert _backend.requested_from_environment({}) == "auto"
    assert _backend.requested_from_environment({"DFNAS_BACKEND": " Triton "}) == "triton"
    with pytest.raises(ValueError, match="DFNAS_BACKEND"):
        _backend.requested_from_environment({"DFNAS_BACKEND": "gpu"})


def test_set_backend_on_this_machine():
    cuda_built = dfnas.build_info()["cuda_built"]
    expected_auto = _backend.choose("cuda", "auto", cuda_built=cuda_built,
                                    triton_available=_backend.triton_available())
    try:
        dfnas.ops.set_backend("reference")
        assert dfnas.ops.get_backend() == "reference"
        x = torch.randn(2, 3, 4, 5)
        # CPU tensors keep the C++ kernels whatever CUDA tensors use.
        torch.testing.assert_close(dfnas.ops.tv_loss(x), dfnas.ops.reference.tv_loss(x))
        if not cuda_built:
            with pytest.raises(RuntimeError, match="not built"):
                dfnas.ops.set_backend("cuda")
        with pytest.raises(ValueError):
            dfnas.ops.set_backend("fastest")
    finally:
        dfnas.ops.set_backend("auto")
    assert dfnas.ops.get_backend() == expected_auto


def test_python_kernels_override_and_restore_the_cpp_kernels():
    """The mechanism set_backend uses for the CUDA key when the C++ CUDA kernels are built,
    shown on the CPU key: a Python kernel takes precedence while installed; removing it brings
    the C++ kernel back."""
    x = torch.randn(2, 3, 4, 5)
    cpp_loss, cpp_sums = schemas.tv_loss_forward(x, "l2")
    calls = []

    def spy(x, kind):
        calls.append(kind)
        return torch.zeros((), dtype=torch.float32), torch.zeros(4, dtype=torch.float64)

    override = _backend.KernelOverride({"tv_loss_forward": spy}, "CPU")
    try:
        loss, _ = schemas.tv_loss_forward(x, "l1")
        assert calls == ["l1"] and loss.item() == 0.0
    finally:
        override.remove()
    loss, sums = schemas.tv_loss_forward(x, "l2")
    assert calls == ["l1"]
    assert torch.equal(loss, cpp_loss) and torch.equal(sums, cpp_sums)


def test_every_schema_has_python_kernels():
    schemas = {"bn_stat_loss_forward", "bn_stat_loss_backward", "tv_loss_forward", "tv_loss_backward",
               "crop_windows", "crop_windows_backward", "region_adam_"}
    assert set(_backend.python_kernels("reference")) == schemas
    if _backend.triton_available():
        assert set(_backend.python_kernels("triton")) == schemas


# Issue 15 (mutation testing): `set_backend`'s CUDA branch, reached on any machine by pretending
# to have a CUDA device and/or a CUDA build (nothing runs on the CUDA key here; only what is
# registered for it is checked).
def has_cuda_kernel(name: str = "tv_loss_forward") -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"dfnas::{name}", "CUDA")


def test_set_backend_registers_python_kernels_for_the_cuda_key_only_when_a_device_exists(monkeypatch):
    """Guards against installing the Python kernels without a CUDA device (`or` for `and`), not
    installing them with one (`== "cuda"`, `_override = None`), registering them for another
    dispatch key or no kernels, and a removed override left as a non-None value that the next
    `set_backend` tries to remove again."""
    if _backend.cuda_built():
        pytest.skip("the C++ CUDA kernels are registered for the CUDA key whatever the override")
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        dfnas.ops.set_backend("reference")
        assert _backend._override is None and not has_cuda_kernel()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        dfnas.ops.set_backend("reference")
        assert isinstance(_backend._override, _backend.KernelOverride)
        assert all(has_cuda_kernel(name) for name in _backend.python_kernels("reference"))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        dfnas.ops.set_backend("reference")
        assert _backend._override is None and not has_cuda_kernel()
    finally:
        monkeypatch.undo()
        dfnas.ops.set_backend("auto")


def test_set_and_get_backend_ask_whether_cuda_kernels_were_built_and_triton_is_there(monkeypatch):
    """Guards against `set_backend` / `get_backend` not passing the build's and triton's
    availability to `choose` (a CUDA build would then be refused 'cuda' and never get it from
    'auto'; an installed triton would be refused), and the CUDA C++ choice installing Python
    kernels."""
    try:
        monkeypatch.setattr(_backend, "cuda_built", lambda: True)
        monkeypatch.setattr(_backend, "triton_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        dfnas.ops.set_backend("cuda")
        assert dfnas.ops.get_backend() == "cuda" and _backend._override is None
        dfnas.ops.set_backend("auto")
        assert dfnas.ops.get_backend() == "cuda" and _backend._override is None
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        dfnas.ops.set_backend("triton")
        assert dfnas.ops.get_backend() == "triton"
    finally:
        monkeypatch.undo()
        dfnas.ops.set_backend("auto")


def test_the_first_use_applies_the_environment_variable(monkeypatch):
    """Guards against `ensure_selected` not passing DFNAS_BACKEND on (the subprocess tests of
    test_ops_imports.py show it end to end, but mutation testing cannot see into a subprocess)."""
    try:
        dfnas.ops.set_backend("auto")
        monkeypatch.setattr(_backend, "_requested", None)  # as before the first op call
        monkeypatch.setenv("DFNAS_BACKEND", "reference")
        assert dfnas.ops.get_backend() == "reference"
    finally:
        monkeypatch.undo()
        dfnas.ops.set_backend("auto")
