"""Shared test configuration: every test starts from the same RNG state."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_rng():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)
