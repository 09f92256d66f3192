"""Shared test configuration: every test starts from the same RNG state, in its own working directory."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_rng():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path, monkeypatch):
    """Run in the test's tmp_path: a default output path (./search-spos, ./dfnas-run-out) lands
    there, and nothing in the repository (e.g. a leftover README pipeline run) changes a result."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _own_tuning_cache(tmp_path, monkeypatch):
    """Searches remember their measured precision/threads (dfnas.nas.tuning_cache): keep that in
    the test's tmp_path, never in the user's cache directory."""
    monkeypatch.setenv("DFNAS_CACHE_DIR", str(tmp_path / "dfnas-cache"))
