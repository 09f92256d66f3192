import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny networks: one thread is faster than spreading them (and deterministic across runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
