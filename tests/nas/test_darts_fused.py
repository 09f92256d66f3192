"""The fused DARTS supernet (`FusedEdges`) against the textbook one: every edge its own
`sum_k w_k * op_k(x)` over `make_op` modules, the weights copied over through `candidate_state`.

Compared: outputs, gradients of every weight and of the alphas, BN running statistics after the
step, eval-mode outputs, and one whole first- and second-order DARTS step (architecture + weights).
"""
from __future__ import annotations

import pytest
import torch

from dfnas.config import UsageError
from dfnas.data.images import Batch
from dfnas.device import Precision
from dfnas.nas.loss import LossConfig
from dfnas.nas.spaces.darts import DartsConfig, edge_offset
from dfnas.nas.spaces.darts_fused import from_phases, repeat_per_edge, to_phases
from dfnas.nas.spaces.darts_ops import PRIMITIVES
from dfnas.nas.spaces.darts_reference import reference_grads, reference_of, reference_state
from dfnas.nas.spaces.darts_search import DartsSearchNetwork
from dfnas.nas.strategies.darts import Architect
from dfnas.nas.trainer import Trainer

from test_search_darts import _tiny_search

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
CONFIGS = {
    "tiny16": DartsConfig.tiny(input_size=16),
    # Odd resolutions (7 -> 4 -> 2, 4 -> 2 -> 1) and the ImageNet stem (FactorizedReduce preprocess).
    "odd_imagenet": DartsConfig(3, 27, 5, channels=4, layers=3, stem="imagenet"),
}
# Elementwise, relative to the tensor's largest magnitude (at least 0.01: a running mean of a
# zero-mean signal is summation noise): only the summation order differs (grouped vs single
# convolutions; BN over 8 samples amplifies it in float32).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


def _build(config: DartsConfig, dtype: torch.dtype, layout: str, seed: int = 0):
    torch.manual_seed(seed)
    net = DartsSearchNetwork(config).to(dtype).train()
    with torch.no_grad():
        for alphas in net.arch_parameters():
            alphas.normal_(0, 1.0)  # far from uniform, so a wrong weight column shows
    reference = reference_of(net)
    x = torch.randn(8, config.in_channels, config.input_size, config.input_size, dtype=dtype)
    net, reference = net.to(memory_format=LAYOUTS[layout]), reference.to(memory_format=LAYOUTS[layout])
    return net, reference, x.contiguous(memory_format=LAYOUTS[layout])


def _assert_same_state(got: dict, want: dict, dtype: torch.dtype) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert_close(got[key], want[key], dtype, key)


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    scale = max(float(want.detach().abs().max()), 0.01) if want.is_floating_point() else 0.0
    torch.testing.assert_close(got, want, rtol=0, atol=TOLERANCE[dtype] * scale,
                               msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_fused_supernet_matches_edge_by_edge_reference(config_name, layout, dtype):
    net, reference, x = _build(CONFIGS[config_name], dtype, layout)
    out, want = net(x), reference(x)
    assert_close(out, want, dtype, "output")
    target = torch.randn_like(want)
    (out * target).sum().backward()
    (want * target).sum().backward()
    want_grads = {n: p.grad for n, p in reference.named_parameters()}
    _assert_same_state({k: v for k, v in reference_grads(net).items() if k in want_grads}, want_grads, dtype)
    # Running statistics moved identically; eval mode then uses them.
    _assert_same_state(reference_state(net), reference.state_dict(), dtype)
    assert_close(net.eval()(x), reference.eval()(x), dtype, "eval output")


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("order", [1, 2])
def test_one_darts_search_step_matches_reference(order, layout):
    """Architecture step (first or second order) then weight step: same alphas and weights after."""
    config = DartsConfig(3, 8, 4, channels=2, layers=3)
    net, reference, _ = _build(config, torch.float64, layout)
    batches = [Batch(torch.randn(4, 3, 8, 8, dtype=torch.float64).contiguous(memory_format=LAYOUTS[layout]),
                     torch.randn(4, 4, dtype=torch.float64), torch.randint(0, 4, (4,))) for _ in range(2)]
    for model in (net, reference):
        trainer = Trainer(LossConfig(temperature=2.0), Precision(torch.device("cpu")), grad_clip=5.0)
        optimizer = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
        architect = Architect(model, trainer, optimizer, lr=0.1, second_order=order == 2, hvp_scale=1e-4)
        for _ in range(2):  # the second round has momentum buffers for the unrolled step
            architect.step(*batches)
            trainer.step(optimizer, model, batches[0], list(model.weight_parameters()))
    _assert_same_state(reference_state(net), reference.state_dict(), torch.float64)


def test_subnet_state_dict_slices_the_candidates_weights():
    net = DartsSearchNetwork(DartsConfig.tiny(input_size=16))
    reference = reference_of(net)
    edge = reference.cells[2].edges[edge_offset(3) + 1].candidates[PRIMITIVES.index("sep_conv_5x5")]
    mine = net.cells[2].candidate_state(3, 1, "sep_conv_5x5")
    assert mine.keys() == edge.state_dict().keys()
    for key, value in edge.state_dict().items():
        assert torch.equal(mine[key], value)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("size", [(4, 6), (5, 7), (1, 1)])
def test_phases_round_trip_and_repeat_keep_values(layout, size):
    x = torch.randn(2, 6, *size).contiguous(memory_format=LAYOUTS[layout])
    assert torch.equal(from_phases(to_phases(x), *size), x)
    repeated = repeat_per_edge(x, 3)
    assert torch.equal(repeated, torch.cat([x, x, x], 1))
    assert torch.equal(to_phases(x, 3), to_phases(repeated))


def test_checkpoint_of_the_edge_by_edge_supernet_is_refused_clearly(tmp_path):
    search, _ = _tiny_search(tmp_path)
    state = search.state_dict()
    state["model"] = reference_of(search.model).state_dict()
    with pytest.raises(UsageError, match="older dfnas"):
        search.load_state_dict(state)
