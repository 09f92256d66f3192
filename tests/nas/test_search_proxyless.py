"""ProxylessNAS: binary-gate gradients against finite differences, the alpha gradient formula,
`two`-mode rescaling, the cost regularizers, the REINFORCE update, and resume."""
from __future__ import annotations

import math

import pytest
import torch

from dfnas.nas.search_data import load_search_data
from dfnas.nas.spaces.proxyless import ProxylessConfig, ProxylessSupernet
from dfnas.nas.strategies import ProxylessSearch, ProxylessSearchConfig, run_search
from dfnas.nas.strategies.proxyless_gates import (GateForward, draw, hardware_loss, keep_pair_mass, sample_gates,
                                                  sample_path)
from dfnas.nas.strategies.proxyless_reinforce import Reinforce, path_log_prob
from dfnas.data.images import Batch
from dfnas.device import Precision
from dfnas.nas.loss import LossConfig
from dfnas.nas.trainer import Trainer

from test_search_data import write_tiny_dataset

CPU = Precision(torch.device("cpu"))


def _supernet_and_batch():
    config = ProxylessConfig.tiny(in_channels=1, input_size=8, num_classes=4)
    model = ProxylessSupernet(config).double().train()
    batch = Batch(torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64),
                  torch.randint(0, 4, (6,)))
    return model, batch


def _mixture_loss(trainer: Trainer, model: ProxylessSupernet, batch: Batch, blocks: list[int],
                  values: list[torch.Tensor]) -> torch.Tensor:
    """The loss with each block's output = sum_k g_k o_k(x) (a real-valued mixture of its ops)."""
    def mixture(g):
        return lambda edge, inputs, output: sum(w * op(inputs[0]) for w, op in zip(g, edge.candidates))
    handles = [model.mixed_edges[i].register_forward_hook(mixture(g)) for i, g in zip(blocks, values)]
    try:
        return trainer.loss(model, batch)
    finally:
        for handle in handles:
            handle.remove()


def _gate_gradients_by_finite_differences(trainer: Trainer, model: ProxylessSupernet, batch: Batch,
                                          blocks: list[int], gates: list[torch.Tensor]) -> list[torch.Tensor]:
    eps = 1e-6
    grads = []
    for block, g in enumerate(gates):
        grad = torch.zeros_like(g)
        for k in range(len(g)):
            plus = [x.detach().clone() for x in gates]
            minus = [x.detach().clone() for x in gates]
            plus[block][k] += eps
            minus[block][k] -= eps
            with torch.no_grad():
                grad[k] = (_mixture_loss(trainer, model, batch, blocks, plus)
                           - _mixture_loss(trainer, model, batch, blocks, minus)) / (2 * eps)
        grads.append(grad)
    return grads


def test_gate_gradients_match_finite_differences():
    model, batch = _supernet_and_batch()
    trainer = Trainer(LossConfig(temperature=2.0), CPU)
    edges = model.mixed_edges
    for edge, active in zip(edges, (1, 3, 0, 2, 5, 4)):
        edge.active = active
    probe = [1, 3]  # two blocks' gates are checked at once
    gates = [torch.zeros(len(edges[i].candidates), dtype=torch.float64) for i in probe]
    for g, i in zip(gates, probe):
        g[edges[i].active] = 1.0
        g.requires_grad_()
    with GateForward([edges[i] for i in probe], gates, [list(range(len(g))) for g in gates]):
        loss = trainer.loss(model, batch)
    analytic = torch.autograd.grad(loss, gates)
    numeric = _gate_gradients_by_finite_differences(trainer, model, batch, probe, gates)
    for block, (grad, expected) in enumerate(zip(analytic, numeric)):
        for k in range(len(grad)):
            assert math.isclose(float(grad[k]), float(expected[k]), rel_tol=1e-5, abs_tol=1e-8), (block, k)


@pytest.mark.parametrize("gate_mode", ["full_v2", "two"])
def test_sampled_gates_carry_the_chain_rule_gradient_to_alpha(gate_mode):
    """Guards the straight-through trick of `sample_gates` + `GateForward` (a flipped sign, or
    the gradient sent to another candidate's path): the gates' value is one-hot on the op each
    block runs, the loss is the plain path's, and dL/dalpha is the softmax Jacobian applied to
    dL/dg, the gradient of the loss of the real-valued mixture sum_k g_k o_k(x) at those gates."""
    model, batch = _supernet_and_batch()
    trainer = Trainer(LossConfig(temperature=2.0), CPU)
    edges = model.mixed_edges
    torch.manual_seed(3)
    alphas = [torch.randn(len(e.candidates), dtype=torch.float64, requires_grad=True) for e in edges]
    gates, involved = sample_gates(edges, alphas, gate_mode, torch.Generator().manual_seed(7))
    for edge, g, inv in zip(edges, gates, involved):
        assert g.detach().tolist() == [float(k == edge.active) for k in inv]
    with torch.no_grad():
        plain = float(trainer.loss(model, batch))
    with GateForward(edges, gates, involved):
        loss = trainer.loss(model, batch)
    assert math.isclose(float(loss.detach()), plain, rel_tol=1e-12)
    analytic = torch.autograd.grad(loss, alphas)

    one_hots = [torch.tensor([float(k == edge.active) for k in range(len(edge.candidates))], dtype=torch.float64,
                             requires_grad=True) for edge in edges]
    mixture = torch.autograd.grad(_mixture_loss(trainer, model, batch, list(range(len(edges))), one_hots), one_hots)
    for block, (alpha, inv, dg) in enumerate(zip(alphas, involved, mixture)):
        probs = torch.softmax(alpha[inv], 0)
        expected, = torch.autograd.grad(probs, alpha, grad_outputs=dg[inv])
        torch.testing.assert_close(analytic[block], expected, msg=lambda m, b=block: f"block {b}: {m}")


def test_alpha_gradient_is_the_reference_formula():
    model, batch = _supernet_and_batch()
    trainer = Trainer(LossConfig(), CPU)
    edge = model.mixed_edges[2]
    edge.active = 4
    alpha = torch.randn(len(edge.candidates), dtype=torch.float64, requires_grad=True)
    probs = torch.softmax(alpha, 0)
    one_hot = torch.zeros_like(probs)
    one_hot[4] = 1.0
    gates = one_hot - probs.detach() + probs
    gates.retain_grad()
    with GateForward([edge], [gates], [list(range(len(probs)))]):
        trainer.loss(model, batch).backward()
    p, dg = probs.detach(), gates.grad
    expected = torch.stack([sum(dg[j] * p[j] * (float(i == j) - p[i]) for j in range(len(p))) for i in range(len(p))])
    torch.testing.assert_close(alpha.grad, expected)


def test_regularizers():
    loss, expected = torch.tensor(2.0), torch.tensor(400.0)
    torch.testing.assert_close(hardware_loss(loss, expected, 300.0, "mul#log", 0.2, 0.3, 0.1),
                               0.2 * 2.0 * (math.log(400) / math.log(300)) ** 0.3 * torch.ones(()))
    torch.testing.assert_close(hardware_loss(loss, expected, 300.0, "add#linear", 0.2, 0.3, 0.1),
                               torch.tensor(2.0 + 0.1 * 100 / 300))


def test_reinforce_step_raises_the_probability_of_the_rewarded_op():
    """Guards the REINFORCE loss sign: one update with a fixed reward for op 0 of block 0 (and the
    same op 1 in block 1 on both paths) must raise op 0's probability, lower the unrewarded op's,
    and leave block 1, where the advantages cancel, as it was."""
    alphas = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    update = Reinforce(momentum=0.9)
    record = update.step(torch.optim.SGD(alphas, lr=0.5), alphas, [[0, 1], [2, 1]], [1.0, 0.0])
    assert record == {"reward": 0.5, "baseline": 0.5}
    probs = torch.softmax(alphas[0].detach(), 0)
    assert probs[0] > 1 / 3 + 0.01 and probs[2] < 1 / 3 - 0.01
    assert float(alphas[0].detach()[1]) == 0.0  # its gradients from the two paths cancel
    torch.testing.assert_close(alphas[1].detach(), torch.zeros(2))
    record = update.step(torch.optim.SGD(alphas, lr=0.5), alphas, [[0, 1]], [1.5])
    assert record["baseline"] == pytest.approx(0.9 * 0.5 + 0.1 * 1.5)


def _search(tmp_path, **overrides) -> ProxylessSearch:
    root = tmp_path / "ds"
    if not root.exists():
        write_tiny_dataset(root, count=40, num_classes=4)
    data = load_search_data(str(root), torch.device("cpu"))
    settings = {"space_preset": "tiny", "epochs": 2, "warmup_epochs": 0, "batch_size": 8, "arch_every": 1,
                "regularizer": "add#linear", "rl_samples": 3, "calib_batches": 1, "calib_batch_size": 8}
    return ProxylessSearch(ProxylessSearchConfig(**{**settings, **overrides}), data, CPU)


def test_two_mode_keeps_the_other_probabilities(tmp_path):
    search = _search(tmp_path, gate_mode="two", arch_lr=0.05, regularizer="none")
    before = [torch.softmax(a.detach(), 0) for a in search.alphas]
    torch.manual_seed(5)
    search.gradient_arch_step(search.arch_stream.next())
    changed = 0
    for alpha, old in zip(search.alphas, before):
        new = torch.softmax(alpha.detach(), 0)
        moved = ~torch.isclose(new, old, rtol=0, atol=1e-7)
        assert int(moved.sum()) in (0, 2)  # only the sampled pair moves...
        torch.testing.assert_close(new[moved].sum(), old[moved].sum())  # ...keeping its total
        changed += int(moved.any())
    assert changed > 0


@pytest.mark.parametrize("arch_update", ["gradient", "reinforce"])
def test_end_to_end_and_resume(tmp_path, arch_update):
    run_config = {"arch_update": arch_update}
    full = _search(tmp_path, arch_update=arch_update)
    initial = [a.detach().clone() for a in full.alphas]
    done = run_search(full, tmp_path / "full", run_config, progress_bar=False, echo=lambda s: None)
    assert any(not torch.equal(a, b) for a, b in zip(initial, full.alphas))
    arch = done.architecture
    assert arch.derived["flops"] > 0 and len(arch.choices) == 6
    arch.build().eval()(torch.zeros(1, 1, 8, 8))
    if arch_update == "reinforce":
        assert full.reinforce.baseline is not None

    run_search(_search(tmp_path, arch_update=arch_update), tmp_path / "split", run_config, stop_after=1,
               progress_bar=False, echo=lambda s: None)
    resumed = run_search(_search(tmp_path, arch_update=arch_update), tmp_path / "split", run_config,
                         resume=True, progress_bar=False, echo=lambda s: None)
    assert resumed.architecture.to_dict() == arch.to_dict()
    assert (tmp_path / "split" / "log.jsonl").read_text() == (tmp_path / "full" / "log.jsonl").read_text()


def test_impossible_target_and_mul_log_units(tmp_path):
    with pytest.raises(ValueError, match="target .* is impossible"):
        _search(tmp_path, target=1e-4)
    with pytest.raises(ValueError, match="mul#log needs costs and target above 1"):
        _search(tmp_path, regularizer="mul#log")


# ----------------------------------------------------------------- found by mutation testing (issue 15)


def test_draws_are_distinct_seeded_and_follow_the_probabilities():
    probs = torch.tensor([0.7, 0.2, 0.1, 0.0], dtype=torch.float64)
    pairs = [draw(probs, torch.Generator().manual_seed(s), 2) for s in range(200)]
    assert all(len(set(p)) == 2 and 3 not in p for p in pairs)  # without replacement; p = 0 never drawn
    assert draw(probs, torch.Generator().manual_seed(5), 2) == pairs[5]
    firsts = [draw(probs, torch.Generator().manual_seed(s))[0] for s in range(400)]
    assert 0.6 < firsts.count(0) / 400 < 0.8 and 0.13 < firsts.count(1) / 400 < 0.27


def test_sample_path_activates_one_op_per_block_drawn_from_softmax_alpha():
    model, _ = _supernet_and_batch()
    edges = model.mixed_edges
    peaked = [torch.full((len(e.candidates),), -30.0) for e in edges]
    for i, alpha in enumerate(peaked):
        alpha[i % len(alpha)] = 30.0
    path = sample_path(edges, peaked, torch.Generator().manual_seed(0))
    assert path == [i % len(a) for i, a in enumerate(peaked)] == [e.active for e in edges]
    flat = [torch.zeros(len(e.candidates)) for e in edges]
    paths = [sample_path(edges, flat, torch.Generator().manual_seed(s)) for s in range(30)]
    assert paths[7] == sample_path(edges, flat, torch.Generator().manual_seed(7))
    assert len({k for p in paths for k in p}) == max(len(e.candidates) for e in edges)


def test_two_mode_gates_two_distinct_candidates_and_full_mode_all():
    model, _ = _supernet_and_batch()
    edges = model.mixed_edges
    alphas = [torch.zeros(len(e.candidates)) for e in edges]
    for seed in range(20):
        gates, involved = sample_gates(edges, alphas, "two", torch.Generator().manual_seed(seed))
        assert all(len(inv) == 2 == len(set(inv)) == len(g) for g, inv in zip(gates, involved))
        assert all(e.active in inv for e, inv in zip(edges, involved))
    gates, involved = sample_gates(edges, alphas, "full_v2", torch.Generator().manual_seed(0))
    assert involved == [list(range(len(e.candidates))) for e in edges]


def test_gate_forward_removes_its_hooks_on_exit():
    model, batch = _supernet_and_batch()
    edges = model.mixed_edges
    alphas = [torch.zeros(len(e.candidates), dtype=torch.float64, requires_grad=True) for e in edges]
    gates, involved = sample_gates(edges, alphas, "full_v2", torch.Generator().manual_seed(0))
    with GateForward(edges, gates, involved) as forward:
        assert len(forward.handles) == len(edges) and all(len(e._forward_hooks) == 1 for e in edges)
    assert all(len(e._forward_hooks) == 0 for e in edges)
    after = torch.autograd.grad(model(batch.images).sum(), alphas, allow_unused=True)
    assert all(g is None for g in after)  # the gates are out of the graph again


def test_keep_pair_mass_restores_the_pairs_total_and_moves_nothing_else():
    old = torch.tensor([0.5, -1.0, 2.0, 0.0])
    alpha = old.clone()
    alpha[[0, 2]] += torch.tensor([0.7, -0.1])  # an update of the pair (0, 2)
    keep_pair_mass([alpha], [[0, 2]], [old[[0, 2]]])
    torch.testing.assert_close(torch.logsumexp(alpha[[0, 2]], 0), torch.logsumexp(old[[0, 2]], 0))
    torch.testing.assert_close(alpha[[1, 3]], old[[1, 3]])
    torch.testing.assert_close(alpha[0] - alpha[2], torch.tensor(0.5 + 0.7 - 2.0 + 0.1))
    torch.testing.assert_close(torch.softmax(alpha, 0)[[1, 3]], torch.softmax(old, 0)[[1, 3]])


def test_without_a_regularizer_the_loss_is_unchanged():
    loss = torch.tensor(2.5)
    assert hardware_loss(loss, torch.tensor(400.0), 300.0, "none", 0.2, 0.3, 0.1) is loss


def test_reinforce_loss_is_the_mean_advantage_weighted_log_probability():
    """One SGD step moves alpha by -lr * d/dalpha of -mean((R - b) log p(path)): checked exactly."""
    torch.manual_seed(0)
    start = [torch.randn(3), torch.randn(4)]
    paths, rewards = [[0, 1], [2, 3], [1, 1]], [0.9, 0.2, 0.4]
    alphas = [torch.nn.Parameter(a.clone()) for a in start]
    update = Reinforce(momentum=0.8)
    update.baseline = 0.3
    record = update.step(torch.optim.SGD(alphas, lr=0.1), alphas, paths, rewards)
    baseline = 0.8 * 0.3 + 0.2 * 0.5
    assert record == {"reward": pytest.approx(0.5), "baseline": pytest.approx(baseline)}
    reference = [a.clone().requires_grad_() for a in start]
    log_p = [sum(torch.log_softmax(a, 0)[k] for a, k in zip(reference, p)) for p in paths]
    loss = -sum((r - baseline) * lp for r, lp in zip(rewards, log_p)) / 3
    grads = torch.autograd.grad(loss, reference)
    for alpha, a0, g in zip(alphas, start, grads):
        torch.testing.assert_close(alpha.detach(), a0 - 0.1 * g)
    torch.testing.assert_close(path_log_prob(start, [2, 0]),
                               torch.log_softmax(start[0], 0)[2] + torch.log_softmax(start[1], 0)[0])


def test_a_draw_is_one_index_unless_more_are_asked_for():
    generator = torch.Generator().manual_seed(0)
    assert draw(torch.tensor([0.0, 1.0, 0.0]), generator) == [1]
    assert len(draw(torch.tensor([0.2, 0.3, 0.5]), generator)) == 1


def test_a_gated_forward_runs_the_active_op_once():
    """The active op's output is reused, not recomputed: its BatchNorms see one batch per forward."""
    model, batch = _supernet_and_batch()
    edges = model.mixed_edges
    alphas = [torch.zeros(len(e.candidates), dtype=torch.float64, requires_grad=True) for e in edges]
    gates, involved = sample_gates(edges, alphas, "full_v2", torch.Generator().manual_seed(1))
    tracked = [[int(m.num_batches_tracked) for m in e.candidates[e.active].modules()
                if isinstance(m, torch.nn.BatchNorm2d)] for e in edges]
    with GateForward(edges, gates, involved):
        model(batch.images)
    after = [[int(m.num_batches_tracked) for m in e.candidates[e.active].modules()
              if isinstance(m, torch.nn.BatchNorm2d)] for e in edges]
    assert all(a == [t + 1 for t in b] for a, b in zip(after, tracked)) and any(tracked)


@pytest.mark.parametrize("gate_mode", ["full_v2", "two"])
def test_gates_are_drawn_from_the_given_generator_only(gate_mode):
    """A resumed search repeats its draws: they come from the search's generator, not torch's global one."""
    model, _ = _supernet_and_batch()
    edges = model.mixed_edges
    alphas = [torch.zeros(len(e.candidates)) for e in edges]
    draws = []
    for global_seed in range(4):
        torch.manual_seed(global_seed)
        gates, involved = sample_gates(edges, alphas, gate_mode, torch.Generator().manual_seed(11))
        draws.append((involved, [e.active for e in edges]))
    assert all(d == draws[0] for d in draws)
