import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """The NAS tests use tiny tensors: spreading them over threads costs more than it saves, and on
    a busy machine the thread barriers stall (measured ~8x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
