"""DARTS (`dfnas/nas/strategies/darts.py`) piece by piece: the Architect's optimizer, first-order
step, unrolled step without momentum buffers and finite-difference Hessian-vector product against
hand computations in float64; the search's setup from its config (optimizers, schedule, splits,
seeds of the streams), an epoch's record (skip counts and warning, notice, metrics), the final
metrics, the state round trip and the alpha plot. Each test takes well under a few seconds."""
from __future__ import annotations

import io
import math

import pytest
import torch
from torch.func import functional_call

from dfnas.config import UsageError
from dfnas.data.images import BatchStream, split_indices
from dfnas.device import Precision
from dfnas.nas.loss import LossConfig
from dfnas.nas.search_data import load_search_data
from dfnas.nas.spaces.darts import NUM_EDGES, DartsConfig, edge_offset
from dfnas.nas.spaces.darts_ops import PRIMITIVES
from dfnas.nas.spaces.darts_search import DartsSearchNetwork
from dfnas.nas.strategies import DartsSearch, DartsSearchConfig
from dfnas.nas.strategies.darts import SKIP_WARNING, Architect, alpha_entropy
from dfnas.nas.strategies.evaluator import calibration_batches, eval_batch_size
from dfnas.nas.strategies.health import fit_batch_to_split
from dfnas.nas.trainer import Trainer

from test_search_darts import ToyMixture, _batches
from test_search_data import write_tiny_dataset

CPU = Precision(torch.device("cpu"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_search_data(str(write_tiny_dataset(tmp_path_factory.mktemp("ds"), count=40, num_classes=4)),
                            torch.device("cpu"))


def search_of(data, **overrides) -> DartsSearch:
    settings = {"space_preset": "tiny", "epochs": 2, "batch_size": 8, "warmup_epochs": 1, "steps_per_epoch": 1,
                "calib_batches": 1, **overrides}
    return DartsSearch(DartsSearchConfig(**settings), data, CPU)


def split_of(model):
    arch = {id(p) for p in model.arch_parameters()}
    return {n: p for n, p in model.named_parameters() if id(p) not in arch}


# ----------------------------------------------------------------------------- config


def test_config_accepts_warmup_from_0_to_epochs_only():
    """Guards against: the warm-up bounds off by one (`<` for `<=`) or a wrong message."""
    for warmup in (0, 3):
        DartsSearchConfig(epochs=3, warmup_epochs=warmup).check()
    for warmup in (-1, 4):
        with pytest.raises(ValueError, match=rf"^warmup_epochs must be in 0\.\.epochs \(3\), got {warmup}$"):
            DartsSearchConfig(epochs=3, warmup_epochs=warmup).check()


# ----------------------------------------------------------------------------- Architect


def test_architect_optimizes_only_the_alphas_with_the_given_adam_settings():
    """Guards against: lr, betas or weight decay of the alphas' Adam not passed on, or the
    weights/alphas split inverted."""
    model = ToyMixture().double()
    trainer = Trainer(LossConfig(temperature=2.0), CPU)
    sgd = torch.optim.SGD(split_of(model).values(), lr=0.1)
    architect = Architect(model, trainer, sgd, lr=0.07, betas=(0.3, 0.8), weight_decay=0.02,
                          second_order=True, hvp_scale=0.05)
    group = architect.optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["weight_decay"]) == (0.07, (0.3, 0.8), 0.02)
    assert [id(p) for p in group["params"]] == [id(model.alpha)]
    assert architect.weights.keys() == split_of(model).keys() and "alpha" not in architect.weights
    assert architect.second_order is True and architect.hvp_scale == 0.05


def test_architect_defaults_are_the_reference_settings():
    """Guards against: Architect's defaults drifting from the reference (and from
    DartsSearchConfig's): Adam lr 3e-4, betas (0.5, 0.999), wd 1e-3, first order, hvp scale 0.01."""
    model = ToyMixture().double()
    architect = Architect(model, Trainer(LossConfig(), CPU), torch.optim.SGD(split_of(model).values(), lr=0.1))
    group, config = architect.optimizer.param_groups[0], DartsSearchConfig()
    assert (group["lr"], group["betas"], group["weight_decay"]) == (3e-4, (0.5, 0.999), 1e-3)
    assert (config.arch_lr, tuple(config.arch_betas), config.arch_weight_decay) == (3e-4, (0.5, 0.999), 1e-3)
    assert architect.second_order is (config.order == 2) is False
    assert architect.hvp_scale == config.hvp_scale == 0.01


def test_first_order_steps_are_adam_on_the_autograd_gradient():
    """Guards against: a first-order step with a wrong gradient (or none applied), or Adam run
    with other settings. Three steps, so betas and weight decay show (Adam's first step is
    lr * sign(g) whatever they are)."""
    torch.manual_seed(0)
    model = ToyMixture().double()
    trainer = Trainer(LossConfig(temperature=2.0), CPU)
    architect = Architect(model, trainer, torch.optim.SGD(split_of(model).values(), lr=0.1),
                          lr=0.05, betas=(0.3, 0.8), weight_decay=0.5)
    reference = model.alpha.detach().clone().requires_grad_()
    adam = torch.optim.Adam([reference], lr=0.05, betas=(0.3, 0.8), weight_decay=0.5)
    for _ in range(3):
        train, arch = _batches((8, 6), 4)
        want = torch.autograd.grad(trainer.loss(model, arch), [model.alpha])[0]
        architect.step(train, arch)
        torch.testing.assert_close(model.alpha.grad, want, rtol=1e-12, atol=1e-14)
        reference.grad = want.clone()
        adam.step()
        torch.testing.assert_close(model.alpha.detach(), reference.detach(), rtol=1e-12, atol=1e-14)


def exact_unrolled_hypergradient(model, trainer, optimizer, train, val) -> list[torch.Tensor]:
    """d/d alpha of L_val(w'), w' = w - eta (g + wd w + momentum buf), buf = 0 where there is none."""
    group = optimizer.param_groups[0]
    weights = split_of(model)
    grads = torch.autograd.grad(trainer.loss(lambda x: functional_call(model, weights, (x,)), train),
                                list(weights.values()), create_graph=True)
    unrolled = {}
    for (name, p), g in zip(weights.items(), grads):
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        momentum = 0.0 if buf is None else group["momentum"] * buf
        unrolled[name] = p - group["lr"] * (g + group["weight_decay"] * p + momentum)
    val_loss = trainer.loss(lambda x: functional_call(model, unrolled, (x,)), val)
    return list(torch.autograd.grad(val_loss, model.arch_parameters()))


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_unrolled_step_without_momentum_buffers_matches_autograd(momentum):
    """Guards against: a missing momentum buffer (the first step of a search, or momentum 0)
    counted as anything but zero, or failing."""
    torch.manual_seed(1)
    model = ToyMixture().double()
    trainer = Trainer(LossConfig(temperature=2.0), CPU)
    sgd = torch.optim.SGD(split_of(model).values(), lr=0.2, momentum=momentum, weight_decay=0.01)
    train, val = _batches((8, 6), 4)
    if momentum == 0.0:  # momentum 0: a step leaves no momentum buffer
        trainer.step(sgd, model, train)
        assert all(s.get("momentum_buffer") is None for s in sgd.state.values())
    else:
        assert not sgd.state  # no step yet: no state at all
    architect = Architect(model, trainer, sgd, second_order=True, hvp_scale=1e-5)
    ours = architect.hypergradient(train, val)
    exact = exact_unrolled_hypergradient(model, trainer, sgd, train, val)
    first_order = torch.autograd.grad(trainer.loss(model, val), model.arch_parameters())
    for mine, want, naive in zip(ours, exact, first_order):
        torch.testing.assert_close(mine, want, rtol=1e-6, atol=1e-9)
        assert not torch.allclose(naive, want, rtol=1e-3)


def test_hessian_vector_product_is_the_central_difference_at_r_scale_over_norm():
    """Guards against: the finite-difference step r = hvp_scale / |v| computed otherwise (the
    result then differs at a large scale), the difference's sign or divisor; and, at a small
    scale, the result not converging to the exact mixed second derivative."""
    torch.manual_seed(2)
    model = ToyMixture().double()
    trainer = Trainer(LossConfig(temperature=2.0), CPU)
    weights = split_of(model)
    batch, _ = _batches((8, 6), 4)
    v = {n: 3.0 * torch.randn_like(p) / p.numel() ** 0.5 for n, p in weights.items()}
    norm = torch.cat([x.flatten() for x in v.values()]).norm()

    def central_difference(r):
        def grad_at(sign):
            shifted = {n: p.detach() + sign * r * v[n] for n, p in weights.items()}
            loss = trainer.loss(lambda x: functional_call(model, shifted, (x,)), batch)
            return torch.autograd.grad(loss, [model.alpha])[0]
        return (grad_at(1.0) - grad_at(-1.0)) / (2 * r)

    sgd = torch.optim.SGD(weights.values(), lr=0.1)
    scale = 0.5
    ours = Architect(model, trainer, sgd, hvp_scale=scale).hessian_vector_product(v, batch)[0]
    torch.testing.assert_close(ours, central_difference(scale / norm), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(central_difference(scale * norm), ours, rtol=1e-4)  # r matters at this scale

    loss = trainer.loss(lambda x: functional_call(model, weights, (x,)), batch)
    grads = torch.autograd.grad(loss, list(weights.values()), create_graph=True)
    exact = torch.autograd.grad(sum((g * v[n]).sum() for n, g in zip(weights, grads)), [model.alpha])[0]
    small = Architect(model, trainer, sgd, hvp_scale=1e-5).hessian_vector_product(v, batch)[0]
    torch.testing.assert_close(small, exact, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("second_order", [False, True])
def test_architecture_steps_leave_the_bn_statistics_alone(second_order):
    """Guards against: the virtual and perturbed forwards of the architecture step moving the
    model's BN running statistics (buffers not copied)."""
    torch.manual_seed(3)
    model = DartsSearchNetwork(DartsConfig(1, 6, 3, channels=2, layers=3)).double().train()
    trainer = Trainer(LossConfig(temperature=2.0), CPU)
    sgd = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    assert any("running_mean" in n for n in buffers)
    Architect(model, trainer, sgd, lr=0.1, second_order=second_order).step(*_batches((4, 1, 6, 6), 3))
    for name, b in model.named_buffers():
        assert torch.equal(b, buffers[name]), name


def test_architecture_losses_never_ask_for_fp16():
    """Guards against: the architecture step's forwards run under fp16 autocast (second
    derivatives and finite differences are unreliable in fp16, and it has no grad scaler)."""
    flags = []

    class Recording(Precision):
        def autocast(self, allow_fp16: bool = True):
            flags.append(allow_fp16)
            return super().autocast(allow_fp16)

    model = ToyMixture().double()
    trainer = Trainer(LossConfig(temperature=2.0), Recording(torch.device("cpu")))
    sgd = torch.optim.SGD(split_of(model).values(), lr=0.1, momentum=0.9)
    for second_order in (False, True):
        Architect(model, trainer, sgd, second_order=second_order).step(*_batches((8, 6), 4))
    assert len(flags) == 1 + 4 and not any(flags)  # first order: 1; second: train, virtual, +-r


def test_alpha_entropy_is_the_mean_entropy_of_the_rows_softmax():
    """Guards against: the softmax over edges instead of ops, a sum instead of the mean."""
    uniform = torch.zeros(NUM_EDGES, len(PRIMITIVES))
    assert alpha_entropy(uniform) == pytest.approx(math.log(8), rel=1e-6)
    peaked = uniform.clone()
    peaked[: NUM_EDGES // 2, 0] = 1e4  # half the edges one-hot: entropy 0
    assert alpha_entropy(peaked) == pytest.approx(math.log(8) / 2, rel=1e-6)
    rows = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]], dtype=torch.float64)  # p = (1/4, 3/4), (1/2, 1/2)
    want = (-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) + math.log(2)) / 2
    assert alpha_entropy(rows) == pytest.approx(want, rel=1e-6)


# ----------------------------------------------------------------------------- DartsSearch setup


def test_search_is_set_up_from_its_config(data):
    """Guards against: a setting not passed on (weights' SGD, the cosine schedule, grad clip, the
    alphas' Adam, order, hvp scale, epochs, the space preset) or the model not initialized from
    the config's seed."""
    config = DartsSearchConfig(space_preset="tiny", epochs=3, batch_size=4, warmup_epochs=1, steps_per_epoch=2,
                               seed=5, lr=0.07, lr_min=0.003, momentum=0.8, weight_decay=1e-3, arch_lr=0.02,
                               arch_betas=(0.4, 0.9), arch_weight_decay=0.01, order=2, hvp_scale=0.03,
                               grad_clip=2.5, arch_fraction=0.25, calib_batches=2)
    torch.manual_seed(123)  # the model must not depend on the process's RNG state
    search = DartsSearch(config, data, CPU)
    group = search.weight_optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.07, 0.8, 1e-3)
    assert {id(p) for p in group["params"]} == {id(p) for p in search.model.weight_parameters()}
    assert (search.scheduler.T_max, search.scheduler.eta_min) == (3, 0.003)
    assert search.trainer.grad_clip == 2.5 and search.trainer.loss_config == config.loss()
    arch = search.architect.optimizer.param_groups[0]
    assert (arch["lr"], arch["betas"], arch["weight_decay"]) == (0.02, (0.4, 0.9), 0.01)
    assert search.architect.second_order is True and search.architect.hvp_scale == 0.03
    assert search.architect.weight_optimizer is search.weight_optimizer
    assert search.num_units == 3 and search.unit_steps(0) == 2 and search.notices == []
    assert search.config == config and search.metric == "agreement"
    assert search.space_config == DartsConfig.tiny(1, 8, 4)  # the preset's size for the data's shape
    torch.manual_seed(5)
    want = DartsSearchNetwork(search.space_config).state_dict()
    for name, value in search.model.state_dict().items():
        assert torch.equal(value, want[name]), name
    assert not search_of(data, order=1).architect.second_order


def test_streams_split_and_seeds(data):
    """Guards against: the weight/arch split drawn with another fraction or seed, the streams or
    the calibration batches seeded otherwise (seed + 1, + 2, + 4), the calibration drawn from the
    arch split, val batches of another size, and one pass (`steps_per_epoch` 0) being the longer
    split's rather than the shorter's."""
    config = DartsSearchConfig(space_preset="tiny", epochs=1, batch_size=4, seed=7, arch_fraction=0.25,
                               calib_batches=3)
    search = DartsSearch(config, data, CPU)
    weight_part, arch_part = split_indices(len(data.train), 0.25, 7)
    assert (len(weight_part), len(arch_part)) == (27, 9)
    assert search.unit_steps(0) == 9 // 4  # the shorter split: the arch one
    for stream, part, seed in ((search.weight_stream, weight_part, 8), (search.arch_stream, arch_part, 9)):
        want = BatchStream(data.train.subset(part), 4, seed)
        for _ in range(3):
            got, expected = stream.next(), want.next()
            assert torch.equal(got.images, expected.images) and torch.equal(got.targets, expected.targets)
    calibration = calibration_batches(data.train.subset(weight_part), 4, 3, 11)
    assert len(search.evaluator.calibration) == len(calibration) == 3
    for got, expected in zip(search.evaluator.calibration, calibration):
        assert torch.equal(got.images, expected.images)
    val = data.val.fixed_batches(eval_batch_size(4))
    assert [len(b.targets) for b in search.evaluator.val] == [len(b.targets) for b in val]
    assert all(torch.equal(a.images, b.images) for a, b in zip(search.evaluator.val, val))


def test_batch_fitted_to_the_shorter_split_and_noticed_in_the_first_epoch_only(tmp_path):
    """Guards against: the batch fitted to the longer split, lr_min not scaled with lr, the
    notice lost or repeated after epoch 0, and a notice without a fitted batch."""
    data = load_search_data(str(write_tiny_dataset(tmp_path / "ds", count=400, num_classes=4)), torch.device("cpu"))
    config = DartsSearchConfig(space_preset="tiny", epochs=2, batch_size=32, warmup_epochs=2, arch_fraction=0.25,
                               calib_batches=1)
    weight_part, arch_part = split_indices(len(data.train), 0.25, config.seed)
    assert (len(weight_part), len(arch_part)) == (270, 90)
    fitted, notice = fit_batch_to_split(config, 90, ("lr", "lr_min"))
    assert fitted.batch_size == 16 and fit_batch_to_split(config, 270)[0].batch_size == 27
    search = DartsSearch(config, data, CPU)
    assert search.config == fitted and search.config.lr_min == pytest.approx(config.lr_min / 2)
    assert search.notices == [notice] and search.weight_stream.batch_size == 16
    search.unit_steps = lambda unit: 1
    assert search.run_unit(0, lambda n: None)["notice"] == notice
    assert "notice" not in search.run_unit(1, lambda n: None)
    plain = search_of(data)
    assert plain.notices == [] and "notice" not in plain.run_unit(0, lambda n: None)


def test_probe_forward_is_the_models_forward(data):
    search = search_of(data)
    model = search.model.eval()
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(search.probe_forward(model, x), model(x))


# ----------------------------------------------------------------------------- run_unit


def test_weight_steps_clip_the_weights_gradient(data):
    """Guards against: the epoch's weight steps not clipped to `grad_clip` (the clip setting or
    the parameter list not passed on). One SGD step from zero momentum, no weight decay:
    |w' - w| = lr * grad_clip exactly when the gradient is clipped."""
    search = search_of(data, epochs=1, warmup_epochs=1, lr=10.0, weight_decay=0.0, grad_clip=0.01)
    before = [p.detach().clone() for p in search.model.weight_parameters()]
    search.run_unit(0, lambda n: None)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(search.model.weight_parameters(), before)])
    assert moved.norm().item() == pytest.approx(10.0 * 0.01, rel=1e-3)


def test_epoch_record_reports_what_the_epoch_did(data):
    """Guards against: a wrong field in an epoch's record: the lr of the epoch (before the
    scheduler's step), the mean train loss, the val metrics, the entropies, skip counts,
    genotype and probabilities after the epoch; progress ticks; the final metrics."""
    search = search_of(data, steps_per_epoch=2, lr=0.08, lr_min=0.002)
    assert search.final_metrics() == {}
    losses, metrics, ticks = [], [], []
    step, evaluate = search.trainer.step, search.evaluator

    def spy_step(*args, **kwargs):
        losses.append(step(*args, **kwargs))
        return losses[-1]

    def spy_evaluate(model):
        metrics.append(evaluate(model))
        return metrics[-1]

    search.trainer.step, search.evaluator = spy_step, spy_evaluate
    for unit, lr in ((0, 0.08), (1, (0.08 + 0.002) / 2)):  # cosine over 2 epochs: the mean after one
        losses.clear()
        record = search.run_unit(unit, ticks.append)
        assert record["lr"] == pytest.approx(lr, rel=1e-12)
        assert record["arch_updates"] is (unit == 1)
        assert len(losses) == 2 and record["train_loss"] == pytest.approx(sum(losses) / 2, rel=1e-12)
        assert record["val_agreement"] == metrics[-1]["agreement"] and record["val_kl"] == metrics[-1]["kl"]
        normal, reduce = alpha_entropy(search.model.alphas_normal), alpha_entropy(search.model.alphas_reduce)
        assert (record["alpha_entropy_normal"], record["alpha_entropy_reduce"]) == (normal, reduce)
        assert record["alpha_entropy"] == pytest.approx((normal + reduce) / 2, rel=1e-12)
        genotype = search.model.genotype()
        assert record["genotype"] == {"normal": genotype.normal, "reduce": genotype.reduce}
        assert record["skip_normal"] == sum(op == "skip_connect" for op, _ in genotype.normal)
        assert record["skip_reduce"] == sum(op == "skip_connect" for op, _ in genotype.reduce)
        for kind in ("normal", "reduce"):
            want = torch.softmax(getattr(search.model, f"alphas_{kind}").detach(), -1)
            torch.testing.assert_close(torch.tensor(record[f"probs_{kind}"]), want)
        assert ticks == [1] * 2 * (unit + 1)
        assert search.final_metrics() == {
            "metric": "agreement", "agreement": metrics[-1]["agreement"], "kl": metrics[-1]["kl"],
            "arch_entropy": record["alpha_entropy"], "num_classes": 4, "uniform_entropy": math.log(8),
            "measured_on": "the supernet"}
    assert search.weight_optimizer.param_groups[0]["lr"] == pytest.approx(0.002, rel=1e-12)


def _cell_alphas(skips: int) -> torch.Tensor:
    """Alphas whose derived cell has `skips` skip connections (and sep_conv_3x3 elsewhere)."""
    alphas = torch.zeros(NUM_EDGES, len(PRIMITIVES))
    ops = ["skip_connect"] * skips + ["sep_conv_3x3"] * (8 - skips)
    for node in range(4):
        for j, op in zip((0, 1), ops[2 * node: 2 * node + 2]):
            alphas[edge_offset(node) + j, PRIMITIVES.index(op)] = 5.0 - j
    return alphas


@pytest.mark.parametrize("normal, reduce, warns", [(3, 0, True), (2, 5, False), (0, 3, False)])
def test_skip_counts_and_the_collapse_warning(data, normal, reduce, warns):
    """Guards against: skips counted in the wrong cell or as other ops, and the warning at
    `SKIP_WARNING` skips (or for the reduce cell) instead of beyond it in the normal cell."""
    search = search_of(data, epochs=1, warmup_epochs=1)  # no architecture step: the alphas stay as set
    with torch.no_grad():
        search.model.alphas_normal.copy_(_cell_alphas(normal))
        search.model.alphas_reduce.copy_(_cell_alphas(reduce))
    record = search.run_unit(0, lambda n: None)
    assert (record["skip_normal"], record["skip_reduce"]) == (normal, reduce)
    assert ("warning" in record) is warns and (normal > SKIP_WARNING) is warns
    if warns:
        assert record["warning"] == ("normal cell has 3 skip connections: the search may be collapsing "
                                     "(raise warmup_epochs or stop earlier)")


# ----------------------------------------------------------------------------- state, plot


def test_state_round_trip_resumes_like_an_uninterrupted_search(data):
    """Guards against: state left out of (or not restored from) the checkpoint: the final
    metrics, optimizers, schedule, streams, trainer; and a checkpoint without `last_metrics` refused."""
    whole = search_of(data, warmup_epochs=0)  # Adam has a state to restore
    whole.run_unit(0, lambda n: None)
    buffer = io.BytesIO()
    torch.save(whole.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    torch.manual_seed(99)
    resumed = search_of(data, warmup_epochs=0)
    trainer_states = []  # the trainer's (the fp16 grad scaler's) state is empty on a CPU: spy on its hand-over
    restore_trainer = resumed.trainer.load_state_dict
    resumed.trainer.load_state_dict = lambda s: (trainer_states.append(s), restore_trainer(s))
    resumed.load_state_dict(state)
    assert trainer_states == [state["trainer"]] and trainer_states[0] is not None
    assert resumed.final_metrics() == whole.final_metrics() != {}
    assert resumed.scheduler.last_epoch == 1
    want, got = whole.run_unit(1, lambda n: None), resumed.run_unit(1, lambda n: None)
    assert got == want
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.architect.optimizer.state_dict()["state"][0]["step"] == 2
    old = search_of(data)
    old.load_state_dict({k: v for k, v in state.items() if k != "last_metrics"})  # before last_metrics existed
    assert old.final_metrics() == {}


def test_checkpoint_with_any_edge_by_edge_key_is_refused_with_the_reason(data):
    """Guards against: an old (edge-by-edge) checkpoint recognized only when every key is an
    edge's, or refused without saying why."""
    search = search_of(data)
    state = search.state_dict()
    state["model"] = {**state["model"], "cells.0.edges.3.candidates.4.op.1.weight": torch.zeros(2, 1, 3, 3)}
    with pytest.raises(UsageError) as refused:
        search.load_state_dict(state)
    assert str(refused.value) == ("this DARTS checkpoint holds the edge-by-edge supernet of an older dfnas; its "
                                  "weights do not fit the fused supernet (darts_fused.py): start the search again")


def test_plot_draws_each_cells_probabilities_per_edge(data, tmp_path, monkeypatch):
    """Guards against: wrong edge labels (node numbering, edges per node), panels or title."""
    calls = []
    monkeypatch.setattr("dfnas.nas.strategies.plots.heatmap", lambda *args, **kwargs: calls.append((args, kwargs)))
    search = search_of(data)
    with torch.no_grad():
        search.model.alphas_normal.normal_()
    assert search.plot(tmp_path) == [tmp_path / "alphas.png"]
    (path, panels), kwargs = calls[0]
    assert path == tmp_path / "alphas.png" and list(panels) == ["normal", "reduce"]
    for kind in ("normal", "reduce"):
        want = torch.softmax(getattr(search.model, f"alphas_{kind}").detach(), -1)
        assert torch.equal(panels[kind], want)
    assert kwargs["row_labels"] == ["0->2", "1->2", "0->3", "1->3", "2->3", "0->4", "1->4", "2->4", "3->4",
                                    "0->5", "1->5", "2->5", "3->5", "4->5"]
    assert kwargs["col_labels"] == list(PRIMITIVES)
    assert kwargs["title"] == "DARTS op probabilities softmax(alpha)"
