"""ProxylessSearch, the search loop (`nas/strategies/proxyless.py`): its setup, cost table and
target, warm-up and architecture-step schedule, the gradient and REINFORCE steps' wiring, the
epoch record, state round trip, final metrics, architecture and plot (found by mutation testing,
group `proxyless-search`)."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from dfnas.data.images import BatchStream, split_indices
from dfnas.device import Precision
from dfnas.nas.arch import make_architecture
from dfnas.nas.profile import CostTable, count_macs, cost_table
from dfnas.nas.search_data import load_search_data
from dfnas.nas.spaces.proxyless import ProxylessConfig, ProxylessNetwork
from dfnas.nas.spaces.proxyless_blocks import ZERO
from dfnas.nas.strategies import ProxylessSearch, ProxylessSearchConfig
from dfnas.nas.strategies.evaluator import calibration_batches
from dfnas.nas.strategies.proxyless_gates import hardware_loss, sample_path

from test_search_data import write_tiny_dataset

CPU = Precision(torch.device("cpu"))
SPACE = ProxylessConfig.tiny(in_channels=1, input_size=8, num_classes=4)  # the tiny data's space
SMALL = {"space_preset": "tiny", "epochs": 2, "warmup_epochs": 0, "batch_size": 8, "arch_every": 1,
         "regularizer": "add#linear", "rl_samples": 3, "calib_batches": 1, "calib_batch_size": 8}


def _data(tmp_path, count: int = 40):
    root = tmp_path / f"ds{count}"
    if not root.exists():
        write_tiny_dataset(root, count=count, num_classes=4)
    return load_search_data(str(root), torch.device("cpu"))


def _search(tmp_path, count: int = 40, **overrides) -> ProxylessSearch:
    return ProxylessSearch(ProxylessSearchConfig(**{**SMALL, **overrides}), _data(tmp_path, count), CPU)


def _latency_table(tmp_path, name: str, fixed_part: float = 0.0625, step: float = 0.25) -> str:
    """A latency table of the tiny space with made-up, binary-exact costs: each of the 4 fixed
    parts `fixed_part`, candidate k of a block (k + 1) * `step`, `zero` 0. So the cheapest path
    costs 4 fixed_part + 3 step (three blocks cannot be removed) and the dearest 4 fixed_part + 36 step."""
    data = cost_table("proxyless", SPACE).to_dict()
    data["metric"] = "latency_ms"
    data["fixed"] = {key: fixed_part for key in data["fixed"]}
    for slot in data["slots"]:
        slot["candidates"] = {op: 0.0 if op == ZERO else (k + 1) * step
                              for k, op in enumerate(slot["candidates"])}
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


# ----------------------------------------------------------------- config and setup


def test_warmup_must_lie_within_the_epochs(tmp_path):
    """Boundaries of `check` (`<` for `<=`, `and` for the chained comparison): warm-up may take
    all epochs (no architecture step at all) or none, never more than the epochs or below 0."""
    for warmup in (0, 2):
        ProxylessSearchConfig(**{**SMALL, "warmup_epochs": warmup}).check()
    for warmup in (3, -1):
        with pytest.raises(ValueError, match=rf"warmup_epochs must be in 0\.\.epochs \(2\), got {warmup}"):
            ProxylessSearchConfig(**{**SMALL, "warmup_epochs": warmup}).check()
    with pytest.raises(ValueError, match="warmup_epochs"):
        _search(tmp_path, warmup_epochs=3)  # the search checks its config


def test_search_is_set_up_as_configured(tmp_path):
    """Guards the wiring of `__init__` (another lr, momentum, nesterov, decay, Adam betas/eps,
    cosine length, clip, baseline momentum, split fraction, seed offset or evaluator batch would
    change every search's result silently)."""
    config = {"lr": 0.07, "momentum": 0.7, "weight_decay": 3e-4, "grad_clip": 1.5, "arch_lr": 0.02,
              "arch_betas": (0.3, 0.9), "arch_eps": 1e-3, "baseline_momentum": 0.6, "arch_fraction": 0.25,
              "seed": 5, "epochs": 3, "calib_batches": 2, "calib_batch_size": 4, "temperature": 2.5,
              "label_smoothing": 0.05}
    search = _search(tmp_path, **config)
    data = _data(tmp_path)
    assert search.config.batch_size == 8 and search.notices == []
    assert search.num_units == 3 and search.metric == "agreement" and search.num_classes == 4
    assert search.space_config == SPACE
    (weights,) = search.weight_optimizer.param_groups
    assert (weights["lr"], weights["momentum"], weights["nesterov"], weights["weight_decay"]) == (0.07, 0.7, True, 3e-4)
    assert [id(p) for p in weights["params"]] == [id(p) for p in search.model.parameters()]
    assert search.scheduler.T_max == 3
    (arch,) = search.arch_optimizer.param_groups
    assert (arch["lr"], tuple(arch["betas"]), arch["eps"], arch["weight_decay"]) == (0.02, (0.3, 0.9), 1e-3, 0.0)
    assert [id(p) for p in arch["params"]] == [id(a) for a in search.alphas]
    assert search.trainer.grad_clip == 1.5
    assert search.trainer.loss_config == search.config.loss()
    assert search.reinforce.momentum == 0.6 and search.reinforce.baseline is None

    weight_part, arch_part = split_indices(len(data.train), 0.25, 5)
    assert len(search.weight_stream.data) == len(weight_part) == 27 and len(search.arch_stream.data) == 9
    for stream, part, seed in ((search.weight_stream, weight_part, 6), (search.arch_stream, arch_part, 7)):
        expected = BatchStream(data.train.subset(part), 8, seed)
        assert stream.batch_size == 8
        assert torch.equal(stream.generator.get_state(), expected.generator.get_state())
        assert torch.equal(stream.order, expected.order)
        assert torch.equal(stream.next().images, expected.next().images)  # the same images: the right part
    assert torch.equal(search.sampler.get_state(), torch.Generator().manual_seed(8).get_state())
    calibration = calibration_batches(data.train.subset(weight_part), 4, 2, 9)
    assert len(search.evaluator.calibration) == 2
    assert all(torch.equal(a.images, b.images) for a, b in zip(search.evaluator.calibration, calibration))
    assert sum(len(b.targets) for b in search.evaluator.val) == len(data.val)


def test_model_and_alphas_follow_the_seed(tmp_path):
    """The supernet's weights come from `torch.manual_seed(seed)` (not the global state): two
    searches with one seed start equal whatever ran before; the alphas, one per candidate, start
    at N(0, 1e-3)."""
    torch.manual_seed(123)
    first = _search(tmp_path, seed=4)
    torch.manual_seed(321)
    second = _search(tmp_path, seed=4)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(first.alphas, second.alphas))
    assert [len(a) for a in first.alphas] == [len(e.candidates) for e in first.edges] == [6, 7] * 3
    values = torch.cat([a.detach() for a in first.alphas])
    assert 2e-4 < float(values.std()) < 5e-3 and float(values.abs().max()) < 1e-2
    other = _search(tmp_path, seed=6)
    assert not torch.equal(values, torch.cat([a.detach() for a in other.alphas]))


def test_a_small_split_shrinks_the_batch_and_notes_it_once(tmp_path):
    """The batch is fitted to the smaller of the two parts (`min`, not `max`: 324 weight images
    would take 13 batches of 24, the 36 arch images one) and the notice goes into the first
    epoch's record only."""
    search = _search(tmp_path, count=400, batch_size=24, steps_per_epoch=0, epochs=2, warmup_epochs=2,
                     arch_fraction=0.1, lr=0.3)
    assert len(search.weight_stream.data) == 324 and len(search.arch_stream.data) == 36
    assert search.config.batch_size == 16 and len(search.notices) == 1
    assert search.config.lr == pytest.approx(0.3 * 16 / 24)
    assert search.weight_stream.batch_size == search.arch_stream.batch_size == 16
    assert search.unit_steps(0) == 324 // 16
    search.unit_steps = lambda unit: 1  # one weight step is enough for the records
    first = search.run_unit(0, lambda n: None)
    second = search.run_unit(1, lambda n: None)
    assert first["notice"] == search.notices[0] and "notice" not in second
    assert "notice" not in _search(tmp_path).run_unit(0, lambda n: None)


# ----------------------------------------------------------------- costs and target


def test_flops_costs_are_mflops_of_the_table(tmp_path):
    """`hw_metric` flops: the analytic MACs table in MFLOPs (`* 1e-6`); bounds are the cheapest and
    dearest paths (min / max per block), counted independently on built networks; the default
    target is halfway between."""
    search = _search(tmp_path)
    assert search.table.to_dict() == cost_table("proxyless", SPACE, "macs").to_dict() and search.cost_scale == 1e-6
    cheapest = [min(range(len(s)), key=lambda k, s=s: list(s.values())[k]) for s in search.table.slots]
    dearest = [max(range(len(s)), key=lambda k, s=s: list(s.values())[k]) for s in search.table.slots]
    for bound, path in ((search.lowest, cheapest), (search.highest, dearest)):
        choices = [e.candidate_names[k] for e, k in zip(search.edges, path)]
        macs = count_macs(ProxylessNetwork(SPACE, choices), (1, 8, 8))
        assert bound == pytest.approx(macs / 1e6, rel=1e-9) == pytest.approx(search.path_cost(path), rel=1e-12)
    assert search.lowest < search.highest
    assert search.target == pytest.approx((search.lowest + search.highest) / 2, rel=1e-12)
    assert _search(tmp_path, target=0.3).target == 0.3
    record = search.run_unit(0, lambda n: None)
    assert record["cost_unit"] == "MFLOPs" and record["target"] == search.target


def test_latency_costs_come_from_the_table_file(tmp_path):
    """`hw_metric` latency with a table: its costs unscaled (ms); bounds 4 x 0.0625 + 3 x 0.25 and
    4 x 0.0625 + 6 x 1.5 by construction of the table; unit "ms"."""
    path = _latency_table(tmp_path, "latency.json")
    search = _search(tmp_path, hw_metric="latency", latency_table=path)
    assert search.table.to_dict() == CostTable.load(path).to_dict() and search.cost_scale == 1.0
    assert (search.lowest, search.highest, search.target) == (1.0, 9.25, 5.125)
    assert search.path_cost([5, 6, 0, 6, 1, 3]) == 0.25 + 1.5 + 0 + 0.25 + 0 + 0.5 + 1.0
    assert search.run_unit(0, lambda n: None)["cost_unit"] == "ms"
    assert search.architecture().derived["latency_ms"] == search.path_cost(search._indices(search.derived_choices()))
    assert "latency_ms" not in _search(tmp_path).architecture().derived  # flops: no latency table given


@pytest.mark.parametrize("edit", ["space", "metric", "config"])
def test_a_latency_table_of_another_kind_is_refused(tmp_path, edit):
    """Each of the three mismatches alone is refused (`and` for `or`)."""
    path = _latency_table(tmp_path, "latency.json")
    data = json.loads(open(path).read())
    data[edit] = {"space": "spos", "metric": "macs", "config": {**data["config"], "num_classes": 5}}[edit]
    (tmp_path / "other.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"latency table .*other\.json is for .* at another config than this "
                                         r"search's proxyless space"):
        _search(tmp_path, hw_metric="latency", latency_table=str(tmp_path / "other.json"))


def test_without_a_table_latency_is_measured_on_the_device(tmp_path, monkeypatch):
    """No `latency_table`: the table is measured for this space on this device (scale 1)."""
    import dfnas.nas.strategies.proxyless as module
    calls = []
    made_up = CostTable.load(_latency_table(tmp_path, "latency.json"))

    def measure(space, config, device):
        calls.append((space, config, device))
        return made_up
    monkeypatch.setattr(module, "build_latency_table", measure)
    search = _search(tmp_path, hw_metric="latency")
    assert calls == [("proxyless", SPACE, torch.device("cpu"))]
    assert search.table is made_up and search.cost_scale == 1.0 and search.lowest == 1.0


def test_target_bounds_and_mul_log_units(tmp_path):
    """The target may equal the cheapest path's cost (`<=` for `<`); mul#log needs the cheapest
    cost above 1 (exactly 1 is refused: `<` for `<=`; `max` for `min`), with the unit in the message."""
    path = _latency_table(tmp_path, "latency.json")  # lowest exactly 1.0 ms
    assert _search(tmp_path, hw_metric="latency", latency_table=path, target=1.0).target == 1.0
    with pytest.raises(ValueError, match=r"target 0\.999 ms is impossible: this space's architectures cost 1 to 9\.25 ms"):
        _search(tmp_path, hw_metric="latency", latency_table=path, target=0.999)
    with pytest.raises(ValueError, match=r"mul#log needs costs and target above 1 ms .* spans 1 to 9\.25 ms"):
        _search(tmp_path, hw_metric="latency", latency_table=path, regularizer="mul#log")
    above = _latency_table(tmp_path, "above.json", fixed_part=0.125)  # lowest 1.25 ms
    assert _search(tmp_path, hw_metric="latency", latency_table=above, regularizer="mul#log").lowest == 1.25
    with pytest.raises(ValueError, match=r"mul#log needs costs and target above 1 MFLOPs"):
        _search(tmp_path, regularizer="mul#log")
    with pytest.raises(ValueError, match=r"target 1e-05 MFLOPs is impossible"):
        _search(tmp_path, target=1e-5)


def test_expected_cost_is_the_softmax_weighted_table(tmp_path):
    """E[c] = fixed + sum_blocks sum_k softmax(alpha)_k c_k in the table's unit (`/ scale` for `* scale`)."""
    path = _latency_table(tmp_path, "latency.json")
    search = _search(tmp_path, hw_metric="latency", latency_table=path)
    with torch.no_grad():
        for i, alpha in enumerate(search.alphas):
            alpha.copy_(torch.linspace(-1.0, 1.0, len(alpha)) * (i + 1))
    expected = 0.25
    for alpha, slot in zip(search.alphas, search.table.slots):
        p = torch.softmax(alpha.detach().double(), 0)
        expected += sum(float(p[k]) * cost for k, cost in enumerate(slot.values()))
    assert float(search.expected_cost().detach()) == pytest.approx(expected, rel=1e-6)
    flops = _search(tmp_path)
    uniform = sum(sum(s.values()) / len(s) for s in flops.table.slots) + flops.table.fixed_total
    assert float(flops.expected_cost().detach()) == pytest.approx(uniform * 1e-6, rel=1e-4)  # alphas ~ 0: uniform


# ----------------------------------------------------------------- the epoch


def test_sample_path_draws_from_the_search_sampler(tmp_path):
    """Paths come from the search's sampler seeded seed + 3 (`None`: the global RNG, not resumable)."""
    search = _search(tmp_path, seed=3)
    generator = torch.Generator().manual_seed(6)
    for _ in range(3):
        assert search.sample_path() == sample_path(search.edges, search.alphas, generator)
    assert search.probe_forward(search.model, torch.zeros(2, 1, 8, 8)).shape == (2, 4)


def _count_calls(search, monkeypatch):
    calls = {"gradient": 0, "reinforce": 0, "weight": 0, "arch_batches": 0, "order": ""}
    for name, key in (("gradient_arch_step", "gradient"), ("reinforce_arch_step", "reinforce")):
        original = getattr(search, name)

        def wrapped(*args, original=original, key=key):
            calls[key] += 1
            calls["order"] += "a"
            return original(*args)
        monkeypatch.setattr(search, name, wrapped)
    step = search.trainer.step

    def weight_step(*args):
        calls["weight"] += 1
        calls["order"] += "w"
        return step(*args)
    monkeypatch.setattr(search.trainer, "step", weight_step)
    arch_next = search.arch_stream.next

    def arch_batch():
        calls["arch_batches"] += 1
        return arch_next()
    monkeypatch.setattr(search.arch_stream, "next", arch_batch)
    return calls


@pytest.mark.parametrize("arch_update", ["gradient", "reinforce"])
def test_warmup_then_one_architecture_step_every_arch_every_weight_steps(tmp_path, monkeypatch, arch_update):
    """No architecture step during warm-up (`>` for `>=` would skip the first epoch after it),
    then one right after weight steps arch_every, 2 arch_every, ... (`step % k`, `step - 1` or
    `step + 2` would step after other weight steps); `arch_update` picks the kind; each gradient
    step takes one arch batch and each REINFORCE step rl_samples; one progress tick per weight step."""
    search = _search(tmp_path, epochs=3, warmup_epochs=1, steps_per_epoch=7, arch_every=3, rl_samples=3,
                     arch_update=arch_update)
    calls = _count_calls(search, monkeypatch)
    ticks = []
    warm = search.run_unit(0, ticks.append)
    assert calls == {"gradient": 0, "reinforce": 0, "weight": 7, "arch_batches": 0, "order": "w" * 7}
    assert ticks == [1] * 7 and warm["arch_updates"] == 0
    assert not {"arch_loss", "reward", "baseline"} & set(warm)
    record = search.run_unit(1, ticks.append)
    assert calls["order"] == "w" * 7 + "wwwawwwaw"  # after the 3rd and the 6th
    assert calls[arch_update] == 2 and calls[{"gradient": "reinforce", "reinforce": "gradient"}[arch_update]] == 0
    assert calls["weight"] == 14 and ticks == [1] * 14 and record["arch_updates"] == 2
    assert calls["arch_batches"] == (2 if arch_update == "gradient" else 6)
    keys = {"gradient": {"arch_loss"}, "reinforce": {"reward", "baseline"}}[arch_update]
    assert keys <= set(record) and not ({"arch_loss", "reward", "baseline"} - keys) & set(record)


def test_all_warmup_never_updates_the_architecture(tmp_path):
    """warmup_epochs == epochs: no architecture step at all (the alphas stay as initialized)."""
    search = _search(tmp_path, epochs=2, warmup_epochs=2, steps_per_epoch=2)
    before = [a.detach().clone() for a in search.alphas]
    records = [search.run_unit(u, lambda n: None) for u in range(2)]
    assert [r["arch_updates"] for r in records] == [0, 0]
    assert all(torch.equal(a, b) for a, b in zip(before, search.alphas))


def test_epoch_record_holds_what_the_epoch_did(tmp_path, monkeypatch):
    """Every field of the record, recomputed from what the epoch ran: the lr it trained at (before
    the cosine step), the mean weight loss and arch loss, the argmax path's val metrics (after BN
    recalibration, not the last sampled path's), costs, entropy, choices, probabilities."""
    search = _search(tmp_path, epochs=4, steps_per_epoch=4, arch_every=2, lr=0.2)
    losses, arch_losses = [], []
    step, arch_step = search.trainer.step, search.gradient_arch_step

    def weight_step(*args):
        losses.append(step(*args))
        return losses[-1]

    def gradient_step(batch):
        arch_losses.append(arch_step(batch)["arch_loss"])
        return {"arch_loss": arch_losses[-1], "expected_cost": 0.0}
    monkeypatch.setattr(search.trainer, "step", weight_step)
    monkeypatch.setattr(search, "gradient_arch_step", gradient_step)
    search.model.eval()  # the epoch must train in train mode
    first = search.run_unit(0, lambda n: None)
    assert first["lr"] == 0.2 and search.model.training
    assert first["train_loss"] == pytest.approx(sum(losses) / 4, rel=1e-12)
    assert first["arch_loss"] == pytest.approx(sum(arch_losses) / 2, rel=1e-12) and len(arch_losses) == 2
    choices = [e.candidate_names[int(a.argmax())] for e, a in zip(search.edges, search.alphas)]
    assert first["choices"] == choices == search.derived_choices() == search.model.active_choices()
    again = search.evaluator(search.model)  # recalibration is exact: the same score again
    assert (first["val_agreement"], first["val_kl"]) == (again["agreement"], again["kl"])
    probs = [torch.softmax(a.detach(), 0) for a in search.alphas]
    assert first["probs"] == [p.tolist() for p in probs]
    entropy = sum(float(-(p * p.log()).sum()) for p in probs) / len(probs)
    assert first["entropy"] == pytest.approx(entropy, rel=1e-6)
    assert first["expected_cost"] == pytest.approx(float(search.expected_cost().detach()), rel=1e-12)
    indices = [e.candidate_names.index(c) for e, c in zip(search.edges, choices)]
    assert first["argmax_cost"] == search.path_cost(indices)
    assert first["zero_blocks"] == choices.count(ZERO)
    assert search.last_metrics == {"agreement": again["agreement"], "kl": again["kl"], "arch_entropy": first["entropy"]}
    second = search.run_unit(1, lambda n: None)
    assert second["lr"] == pytest.approx(0.2 * (1 + math.cos(math.pi / 4)) / 2, rel=1e-9)  # one cosine step
    assert set(first) == {"lr", "arch_updates", "train_loss", "val_agreement", "val_kl", "expected_cost",
                          "argmax_cost", "target", "cost_unit", "entropy", "zero_blocks", "choices", "probs",
                          "arch_loss"}


def test_zero_blocks_count_the_argmax_zeros(tmp_path):
    """`zero_blocks` counts the argmax path's removed blocks, `zero_capable_blocks` the blocks with a shortcut."""
    search = _search(tmp_path, steps_per_epoch=1, warmup_epochs=2)
    with torch.no_grad():
        for alpha, edge in zip(search.alphas, search.edges):
            alpha.zero_()
            alpha[edge.candidate_names.index(ZERO) if ZERO in edge.candidate_names else 2] = 5.0
    record = search.run_unit(0, lambda n: None)
    assert record["zero_blocks"] == 3 and record["choices"] == ["5x5_MBConv3", ZERO] * 3
    final = search.final_metrics()
    assert final["zero_blocks"] == 3 and final["zero_capable_blocks"] == 3
    search.edges, search.alphas = search.edges[1:], search.alphas[1:]  # blocks 1-5: 3 of 5 removable
    assert search.final_metrics()["zero_capable_blocks"] == 3  # (`not in` counted the tiny space's 3 others)


# ----------------------------------------------------------------- the architecture steps


def test_gradient_step_adds_the_cost_term_and_takes_one_adam_step(tmp_path, monkeypatch):
    """The gradient step's loss is the sampled path's loss plus the regularizer at the expected
    cost before the step and this search's target and coefficients; its alpha gradient is the
    plain loss's plus exactly the gradient of the cost term (two identical searches, one without
    a regularizer); Adam's first step moves each alpha by lr g / (|g| + eps) (full_v2 keeps no pair mass)."""
    settings = {"reg_lambda": 0.7, "reg_alpha": 0.4, "reg_beta": 0.2, "arch_eps": 0.5, "arch_lr": 0.03,
                "target": 0.3, "gate_mode": "full_v2"}
    plain, regularized = _search(tmp_path, regularizer="none", **settings), _search(tmp_path, **settings)
    grads = {}
    for name, search in (("plain", plain), ("regularized", regularized)):
        step = search.arch_optimizer.step

        def recording(*args, search=search, name=name, step=step):
            grads[name] = [a.grad.clone() for a in search.alphas]
            return step(*args)
        monkeypatch.setattr(search.arch_optimizer, "step", recording)
    alphas = [a.detach().clone().requires_grad_() for a in regularized.alphas]
    expected = regularized.table.expected([torch.softmax(a, 0) for a in alphas]) * 1e-6
    cost_term = 0.7 * (expected - 0.3) / 0.3
    cost_grads = torch.autograd.grad(cost_term, alphas)

    batch = plain.arch_stream.next()
    assert torch.equal(batch.images, regularized.arch_stream.next().images)
    before = [a.detach().clone() for a in regularized.alphas]
    plain_record = plain.gradient_arch_step(batch)
    record = regularized.gradient_arch_step(batch)
    assert record["expected_cost"] == pytest.approx(float(expected.detach()), rel=1e-6)
    loss = plain_record["arch_loss"]
    assert record["arch_loss"] == pytest.approx(loss + float(cost_term.detach()), rel=1e-6)
    assert plain_record["expected_cost"] == record["expected_cost"]
    for g_plain, g_reg, g_cost in zip(grads["plain"], grads["regularized"], cost_grads):
        torch.testing.assert_close(g_reg, g_plain + g_cost.float())
        assert bool((g_plain != 0).all())  # full_v2: every candidate is gated (not two of them)
    for old, new, g in zip(before, regularized.alphas, grads["regularized"]):
        torch.testing.assert_close(new.detach(), old - 0.03 * g / (g.abs() + 0.5))

    # mul#log on the same step: L * alpha * (log E / log T)^beta, with its own target and coefficients
    mul = _search(tmp_path, regularizer="none", **{**settings, "target": 0.4})
    mul.config.regularizer = "mul#log"  # the tiny space's MFLOPs are below 1; only the formula is checked here
    mul_record = mul.gradient_arch_step(mul.arch_stream.next())
    expected_loss = hardware_loss(torch.tensor(loss), torch.tensor(record["expected_cost"]), 0.4, "mul#log",
                                  0.4, 0.2, 0.7)
    assert mul_record["arch_loss"] == pytest.approx(float(expected_loss), rel=1e-5)


def test_gradient_step_runs_in_full_precision_through_the_search_combine(tmp_path, monkeypatch):
    """The architecture loss is asked for without fp16 (`allow_fp16=False`: unscaled fp16 gate
    gradients underflow; only a CUDA fp16 run could show it otherwise) and the gated forward uses
    the search's `gate_combine` (benchmarks swap in the eager reference through it)."""
    search = _search(tmp_path)
    seen, combined = [], []
    loss = search.trainer.loss
    monkeypatch.setattr(search.trainer, "loss", lambda *args, **kwargs: seen.append(kwargs) or loss(*args, **kwargs))
    combine = search.gate_combine
    search.gate_combine = lambda *args: combined.append(len(args)) or combine(*args)
    search.gradient_arch_step(search.arch_stream.next())
    assert seen == [{"allow_fp16": False}] and len(combined) == len(search.edges)


def test_weight_steps_clip_the_gradient_norm(tmp_path):
    """`grad_clip` reaches the weight steps (the parameters are handed to the trainer): the first
    nesterov SGD step moves the weights by lr (1 + momentum) g, so by at most lr 1.5 clip."""
    search = _search(tmp_path, grad_clip=1e-3, lr=1.0, momentum=0.5, weight_decay=0.0, steps_per_epoch=1,
                     warmup_epochs=2)
    before = [p.detach().clone() for p in search.model.parameters()]
    search.run_unit(0, lambda n: None)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(search.model.parameters(), before)])
    assert 1e-4 < float(moved.norm()) <= 1.5e-3 * (1 + 1e-5)


def test_gradient_step_draws_from_the_search_sampler_only(tmp_path):
    """The gates come from the search's sampler, not torch's global generator: two identical
    searches take identical steps whatever the global seed (a resumed search repeats them)."""
    first, second = _search(tmp_path, arch_lr=0.1), _search(tmp_path, arch_lr=0.1)
    batch = first.arch_stream.next()
    torch.manual_seed(0)
    one = first.gradient_arch_step(batch)
    torch.manual_seed(99)
    assert second.gradient_arch_step(batch) == one
    assert all(torch.equal(a, b) for a, b in zip(first.alphas, second.alphas))
    assert torch.equal(first.sampler.get_state(), second.sampler.get_state())


def test_reinforce_step_scores_each_sampled_path_on_its_own_batch(tmp_path, monkeypatch):
    """Reward of each of the rl_samples paths: its top-1 agreement on its own arch batch times
    (T / cost)^w, with this search's target and exponent; paths from the search's sampler."""
    search = _search(tmp_path, rl_samples=4, rl_exponent=0.5, target=0.45, arch_update="reinforce", seed=1)
    reference = _search(tmp_path, rl_samples=4, rl_exponent=0.5, target=0.45, arch_update="reinforce", seed=1)
    seen = {}
    step = search.reinforce.step

    def recording(optimizer, alphas, paths, rewards):
        seen.update(paths=[list(p) for p in paths], rewards=list(rewards))
        return step(optimizer, alphas, paths, rewards)
    monkeypatch.setattr(search.reinforce, "step", recording)
    record = search.reinforce_arch_step()

    generator = torch.Generator().manual_seed(4)
    expected_paths, expected_rewards = [], []
    for _ in range(4):
        path = sample_path(reference.edges, reference.alphas, generator)
        batch = reference.arch_stream.next()
        with torch.no_grad():
            logits = reference.model(batch.images)
        agreement = float((logits.argmax(1) == batch.soft_labels.argmax(1)).float().mean())
        cost = reference.table.cost(path) * 1e-6
        expected_paths.append(path)
        expected_rewards.append(agreement * (0.45 / cost) ** 0.5)
    assert seen["paths"] == expected_paths
    assert seen["rewards"] == pytest.approx(expected_rewards, rel=1e-6)
    assert any(r > 0 for r in expected_rewards) and len(set(map(tuple, expected_paths))) > 1
    assert record["reward"] == pytest.approx(sum(expected_rewards) / 4, rel=1e-6)
    assert record["baseline"] == pytest.approx(sum(expected_rewards) / 4, rel=1e-6)  # the first sets it


# ----------------------------------------------------------------- state, results, plot


@pytest.mark.parametrize("arch_update", ["gradient", "reinforce"])
def test_state_round_trip_continues_like_an_uninterrupted_search(tmp_path, arch_update):
    """A fresh search that loads the state after epoch 1 does epoch 2 exactly as the search that
    never stopped: every part of the state is saved and restored (weights, alphas, both optimizers,
    the cosine, both streams, the sampler, the REINFORCE baseline, the last metrics)."""
    settings = {"epochs": 3, "steps_per_epoch": 3, "arch_every": 1, "arch_update": arch_update, "arch_lr": 0.05}
    full = _search(tmp_path, **settings)
    full.run_unit(0, lambda n: None)
    state = copy.deepcopy(full.state_dict())
    resumed = _search(tmp_path, **settings)  # at the start: what is not restored stays an epoch behind
    handed = []
    load_trainer = resumed.trainer.load_state_dict
    resumed.trainer.load_state_dict = lambda trainer_state: handed.append(trainer_state) or load_trainer(trainer_state)
    resumed.load_state_dict(state)
    assert handed == [state["trainer"]]  # the GradScaler's state (fp16 on CUDA only; empty here)
    assert resumed.final_metrics() == full.final_metrics() != {}
    assert resumed.reinforce.baseline == full.reinforce.baseline
    assert (resumed.reinforce.baseline is None) == (arch_update == "gradient")
    torch.manual_seed(0)  # run_search restores the global RNG (dropout) itself
    expected = full.run_unit(1, lambda n: None)
    torch.manual_seed(0)
    got = resumed.run_unit(1, lambda n: None)
    assert got == expected
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(full.alphas, resumed.alphas))
    assert resumed.scheduler.last_epoch == 2 and resumed.trainer.state_dict() == full.trainer.state_dict()


def test_state_restores_the_cost_table_and_old_states_load(tmp_path):
    """The checkpoint's cost table replaces the new search's (a measured latency table differs
    between runs), and a state without `last_metrics` (written before it existed) loads empty."""
    search = _search(tmp_path, hw_metric="latency", latency_table=_latency_table(tmp_path, "a.json"))
    state = search.state_dict()
    assert state["cost_table"] == search.table.to_dict() and state["last_metrics"] == {}
    other = _search(tmp_path, hw_metric="latency", latency_table=_latency_table(tmp_path, "b.json", step=0.5))
    other.last_metrics = {"agreement": 1.0}
    del state["last_metrics"]
    other.load_state_dict(state)
    assert other.table.to_dict() == search.table.to_dict() and other.last_metrics == {}
    assert other.final_metrics() == {}


def test_a_resumed_search_takes_bounds_and_target_from_the_restored_table(tmp_path, monkeypatch):
    """A latency table measured on the device differs from run to run; a resumed search runs on
    the checkpoint's table, so its cost bounds and default target must be that table's too (they
    were the new measurement's: the resumed search regularized towards another target)."""
    import dfnas.nas.strategies.proxyless as module
    tables = iter([CostTable.load(_latency_table(tmp_path, "first.json")),
                   CostTable.load(_latency_table(tmp_path, "second.json", step=0.5))])
    monkeypatch.setattr(module, "build_latency_table", lambda space, config, device: next(tables))
    first = _search(tmp_path, hw_metric="latency")
    resumed = _search(tmp_path, hw_metric="latency")
    assert (first.lowest, first.highest, first.target) == (1.0, 9.25, 5.125)
    assert (resumed.lowest, resumed.highest, resumed.target) == (1.75, 18.25, 10.0)
    resumed.load_state_dict(first.state_dict())
    assert (resumed.lowest, resumed.highest, resumed.target) == (1.0, 9.25, 5.125)
    assert resumed.run_unit(0, lambda n: None)["target"] == 5.125
    tables = iter([CostTable.load(_latency_table(tmp_path, "first.json")),
                   CostTable.load(_latency_table(tmp_path, "second.json", step=0.5))])
    first, resumed = (_search(tmp_path, hw_metric="latency", target=3.0) for _ in range(2))
    resumed.load_state_dict(first.state_dict())
    assert resumed.target == 3.0  # a target given is kept


def test_final_metrics_describe_the_argmax_path(tmp_path):
    """Empty before the first epoch, then the argmax path's metrics under their names (keys mistyped
    or the uniform entropy of other sizes would mislead `health.search_health`)."""
    search = _search(tmp_path, steps_per_epoch=2)
    assert search.final_metrics() == {}
    record = search.run_unit(0, lambda n: None)
    final = search.final_metrics()
    assert final == {"metric": "agreement", "agreement": record["val_agreement"], "kl": record["val_kl"],
                     "arch_entropy": record["entropy"], "num_classes": 4,
                     "uniform_entropy": pytest.approx((3 * math.log(6) + 3 * math.log(7)) / 6, rel=1e-12),
                     "zero_blocks": record["zero_blocks"], "zero_capable_blocks": 3,
                     "measured_on": "the argmax path"}


def test_architecture_is_the_argmax_path(tmp_path):
    """The result is the argmax of each block's alphas, without a latency table for flops."""
    search = _search(tmp_path)
    wanted = [2, 6, 0, 3, 5, 6]
    with torch.no_grad():
        for alpha, k in zip(search.alphas, wanted):
            alpha[k] = 1.0
    choices = [e.candidate_names[k] for e, k in zip(search.edges, wanted)]
    assert search.derived_choices() == choices and search._indices(choices) == wanted
    arch = search.architecture()
    assert arch.to_dict() == make_architecture("proxyless", SPACE, choices).to_dict()


def test_plot_draws_the_padded_softmax_grid(tmp_path, monkeypatch):
    """The heat map gets softmax(alpha) per block, NaN-padded to the widest block, its labels and title."""
    import dfnas.nas.strategies.plots as plots
    calls = []
    monkeypatch.setattr(plots, "heatmap", lambda *args: calls.append(args))
    search = _search(tmp_path)
    with torch.no_grad():
        search.alphas[0].copy_(torch.arange(6.0))
    assert search.plot(tmp_path) == [tmp_path / "alphas.png"]
    (path, panels, rows, columns, title), = calls
    assert path == tmp_path / "alphas.png" and list(panels) == ["blocks"]
    grid = panels["blocks"]
    assert grid.shape == (6, 7) and rows == [f"block {i}" for i in range(6)]
    assert columns == search.edges[1].candidate_names and len(columns) == 7
    for row, alpha in zip(grid, search.alphas):
        torch.testing.assert_close(row[:len(alpha)], torch.softmax(alpha.detach(), 0))
        assert bool(row[len(alpha):].isnan().all())
    assert title == "ProxylessNAS op probabilities softmax(alpha)"
