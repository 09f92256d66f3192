"""`run_search`, the loop every strategy runs in, the settings all strategies share, and the
health checks after a search, on a counting strategy (no network: milliseconds per test). Each
test names the bug it guards against (found by mutation testing, docs/testing.md, search-base
group)."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch

from dfnas.checkpoint import state_digest
from dfnas.config import RunFailed
from dfnas.nas.search_data import SearchData
from dfnas.nas.spaces.darts import DartsConfig
from dfnas.nas.spaces.proxyless import ProxylessConfig
from dfnas.nas.spaces.spos import SposConfig
from dfnas.nas.strategies import health
from dfnas.nas.strategies.base import SearchConfig, run_search, space_config, summarize
from dfnas.nas.strategies.spos import SposSearchConfig

from test_search_learns import Reported


class Counting:
    """A strategy whose state is one number, moved by each unit and by the global RNG."""

    name = "counting"
    unit_name = "round"

    def __init__(self, num_units: int = 4, fail_at: int | None = None, bad_at: int | None = None):
        self.num_units = num_units
        self.total = 0.0
        self.units_run: list[int] = []
        self.fail_at, self.bad_at = fail_at, bad_at

    def unit_steps(self, unit: int) -> int:
        return unit + 2

    def run_unit(self, unit, progress):
        if unit == self.fail_at:
            raise RunFailed("loss became nan")
        self.units_run.append(unit)
        for _ in range(self.unit_steps(unit)):
            progress(1)
        self.total += unit + float(torch.rand(()))  # the global RNG is part of the resumable state
        value = math.inf if unit == self.bad_at else self.total
        return {"total": value, "also": -value, "steps": self.unit_steps(unit), "name": f"u{unit}", "list": [unit]}

    def state_dict(self) -> dict:
        return {"total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.total = state["total"]

    def architecture(self):
        return ("architecture after", self.total)


def _records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_run_search_logs_checkpoints_and_returns_each_unit(tmp_path):
    """Guards against: the unit number missing from (or off by one in) the records, the log not
    appended, units skipped or repeated, the outcome's fields wrong, the echo not the summary."""
    torch.manual_seed(0)
    echoed = []
    strategy = Counting()
    outcome = run_search(strategy, tmp_path / "out", {"a": 1}, progress_bar=False, echo=echoed.append)
    records = _records(tmp_path / "out")
    assert strategy.units_run == [0, 1, 2, 3]
    assert [r["round"] for r in records] == [1, 2, 3, 4] and list(records[0])[0] == "round"
    assert echoed == [summarize(r) for r in records]
    assert outcome.finished and outcome.next_unit == 4
    assert outcome.architecture == ("architecture after", strategy.total)
    assert outcome.final_record == records[-1]
    state = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert state["next_unit"] == 4 and state["run_config"] == {"a": 1}
    assert state["strategy"] == {"total": strategy.total}


def test_stop_after_then_resume_equals_the_whole_run(tmp_path):
    """Guards against: `stop_after` counted from the resumed unit (or off by one), the global RNG
    not restored, the resume starting at another unit, the log not trimmed to the checkpoint, and
    a stopped run reported finished or with an architecture."""
    torch.manual_seed(0)
    whole = Counting()
    run_search(whole, tmp_path / "whole", {}, progress_bar=False, echo=lambda s: None)

    torch.manual_seed(0)
    first = Counting()
    stopped = run_search(first, tmp_path / "split", {}, stop_after=2, progress_bar=False, echo=lambda s: None)
    assert first.units_run == [0, 1]
    assert not stopped.finished and stopped.next_unit == 2 and stopped.architecture is None
    assert stopped.final_record == _records(tmp_path / "split")[-1]
    # A unit logged but never checkpointed (killed in between) and a torn line: both dropped.
    with open(tmp_path / "split" / "log.jsonl", "a") as log:
        log.write(json.dumps({"round": 3, "total": -1.0}) + "\n{\"round\": 4, \"tot")
    torch.manual_seed(123)  # resume restores the RNG of the checkpoint, whatever the current one
    echoed = []
    second = Counting()
    outcome = run_search(second, tmp_path / "split", {}, resume=True, stop_after=3, progress_bar=False,
                         echo=echoed.append)
    assert second.units_run == [2] and outcome.next_unit == 3 and not outcome.finished
    assert echoed[0] == "resuming counting at round 3 of 4"
    third = Counting()
    outcome = run_search(third, tmp_path / "split", {}, resume=True, progress_bar=False, echo=lambda s: None)
    assert third.units_run == [3] and outcome.finished
    assert (tmp_path / "split" / "log.jsonl").read_text() == (tmp_path / "whole" / "log.jsonl").read_text()
    assert third.total == whole.total
    # Resuming a finished run does no unit and still returns the architecture.
    done = Counting()
    again = run_search(done, tmp_path / "split", {}, resume=True, progress_bar=False, echo=lambda s: None)
    assert done.units_run == [] and again.finished and again.architecture == ("architecture after", whole.total)
    assert again.final_record == _records(tmp_path / "whole")[-1]


class RankWorld:
    """Rank `rank` of a 2-process world, without processes: rank 0's broadcasts are `sent`, and
    `check_same` records what the ranks would compare."""

    size, distributed = 2, True

    def __init__(self, rank: int, sent=None):
        self.rank, self.sent, self.compared = rank, sent, []

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value):
        return value if self.rank == 0 else self.sent.pop(0)

    def check_same(self, value, what: str) -> None:
        self.compared.append((value, what))


def test_ranks_compare_their_state_digests_and_only_rank_0_writes(tmp_path):
    """Guards against: ranks not comparing the digest of the state rank 0 saves (or comparing
    nothing, or naming another unit), and a rank other than 0 writing or reading the output."""
    torch.manual_seed(0)
    main = RankWorld(0)
    outcome = run_search(Counting(num_units=2), tmp_path / "out", {"a": 1}, progress_bar=False,
                         echo=lambda s: None, world=main)
    saved = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert [what for _, what in main.compared] == ["the search state after round 1", "the search state after round 2"]
    assert main.compared[-1][0] == state_digest(saved) and main.compared[0][0] != main.compared[1][0]
    torch.manual_seed(0)
    other = RankWorld(1, sent=[outcome.final_record])
    elsewhere = run_search(Counting(num_units=2), tmp_path / "rank1", {"a": 1}, progress_bar=False,
                           echo=lambda s: None, world=other)
    assert not (tmp_path / "rank1").exists()
    assert elsewhere.final_record == outcome.final_record
    assert [digest for digest, _ in other.compared] == [digest for digest, _ in main.compared]
    # A resume: rank 1 takes rank 0's checkpoint, never reads one of its own (it may have none).
    torch.manual_seed(0)
    run_search(Counting(num_units=2), tmp_path / "split", {"a": 1}, stop_after=1, progress_bar=False,
               echo=lambda s: None)
    checkpoint = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    resumed = Counting(num_units=2)
    run_search(resumed, tmp_path / "rank1-resume", {"a": 1}, resume=True, progress_bar=False, echo=lambda s: None,
               world=RankWorld(1, sent=[checkpoint, outcome.final_record]))
    assert resumed.units_run == [1] and resumed.total == pytest.approx(saved["strategy"]["total"])


def test_a_resume_names_the_checkpoint_of_other_settings_and_survives_a_lost_log(tmp_path):
    """Guards against: a refused resume not naming the checkpoint, and a resume failing when the
    log is gone (it is rewritten from the checkpoint's unit count); a run of no unit returns an
    empty final record."""
    out = tmp_path / "out"
    nothing = run_search(Counting(), out, {"lr": 0.1}, stop_after=0, progress_bar=False, echo=lambda s: None)
    assert nothing.final_record == {} and not nothing.finished and nothing.next_unit == 0
    run_search(Counting(), out, {"lr": 0.1}, stop_after=1, progress_bar=False, echo=lambda s: None)
    with pytest.raises(ValueError, match=re.escape(str(out / "checkpoint.pt"))):
        run_search(Counting(), out, {"lr": 0.2}, resume=True, progress_bar=False, echo=lambda s: None)
    (out / "log.jsonl").unlink()
    outcome = run_search(Counting(), out, {"lr": 0.1}, resume=True, progress_bar=False, echo=lambda s: None)
    assert outcome.finished and [r["round"] for r in _records(out)] == [2, 3, 4]


def test_a_new_run_refuses_a_checkpoint_and_clears_a_stale_log(tmp_path):
    """Guards against: a new run overwriting an existing search, or appending to an old log."""
    out = tmp_path / "out"
    run_search(Counting(), out, {}, stop_after=1, progress_bar=False, echo=lambda s: None)
    with pytest.raises(ValueError, match=f"^{out} already holds a search checkpoint; pass --resume or choose "
                                         "another --out$"):
        run_search(Counting(), out, {}, progress_bar=False, echo=lambda s: None)
    (out / "checkpoint.pt").unlink()
    run_search(Counting(), out, {}, stop_after=1, progress_bar=False, echo=lambda s: None)
    assert len(_records(out)) == 1


def test_failed_and_non_finite_units_stop_the_run_with_one_line(tmp_path):
    """Guards against: a RunFailed or a non-finite record field passing silently, written to the
    log or checkpoint, or reported without the strategy, unit and field."""
    out = tmp_path / "failed"
    with pytest.raises(RunFailed) as failed:
        run_search(Counting(fail_at=1), out, {}, progress_bar=False, echo=lambda s: None)
    assert str(failed.value) == ("counting round 2: loss became nan; stopped without an architecture (lower the "
                                 "learning rates or check the data)")
    assert len(_records(out)) == 1
    out = tmp_path / "deeper" / "bad"  # parents are created
    with pytest.raises(RunFailed) as bad:
        run_search(Counting(bad_at=2), out, {}, progress_bar=False, echo=lambda s: None)
    assert str(bad.value) == "counting round 3: total, also became non-finite; stopped without an architecture"
    assert len(_records(out)) == 2
    assert torch.load(out / "checkpoint.pt", weights_only=True)["next_unit"] == 2


def test_progress_bar_counts_each_unit(tmp_path, monkeypatch):
    """Guards against: a progress bar with another total or description than the unit's."""
    import tqdm

    bars = []
    real = tqdm.tqdm

    class Recording(real):
        def __init__(self, *args, **kwargs):
            bars.append(kwargs)
            super().__init__(*args, **{**kwargs, "disable": True})
    monkeypatch.setattr(tqdm, "tqdm", Recording)
    run_search(Counting(num_units=2), tmp_path / "out", {}, progress_bar=True, echo=lambda s: None)
    assert [(b["total"], b["desc"], b["disable"], b["leave"]) for b in bars] == [
        (2, "counting round 1/2", False, False), (3, "counting round 2/2", False, False)]
    run_search(Counting(num_units=1), tmp_path / "quiet", {}, progress_bar=False, echo=lambda s: None)
    assert bars[-1]["disable"] is True
    run_search(Counting(num_units=1), tmp_path / "default", {}, echo=lambda s: None)
    assert bars[-1]["disable"] is False  # a bar unless asked not to


def test_summarize_prints_scalars_only():
    """Guards against: floats printed unrounded, strings, ints or bools dropped, lists printed."""
    assert summarize({"unit": 3, "loss": 0.123456, "phase": "x", "ok": True, "path": [1, 2],
                      "nested": {"a": 1}}) == "unit=3 loss=0.1235 phase=x ok=True"


def test_shared_settings_make_the_loss_and_the_epoch_length():
    """Guards against: loss fields swapped or dropped, `steps_per_epoch` ignored or applied
    when unset."""
    config = SearchConfig(temperature=2.0, t2_factor=False, hard_weight=0.25, label_smoothing=0.1, steps_per_epoch=0)
    loss = config.loss()
    assert (loss.temperature, loss.t2_factor, loss.hard_weight, loss.label_smoothing) == (2.0, False, 0.25, 0.1)
    assert config.epoch_steps(7) == 7
    assert SearchConfig(steps_per_epoch=3).epoch_steps(7) == 3
    assert SearchConfig().to_dict()["seed"] == 2 and SearchConfig().to_dict()["space_preset"] == "tiny"


@pytest.mark.parametrize("size, stride", [(64, 1), (65, 2)])
def test_space_configs_at_each_preset(size, stride):
    """Guards against: a preset giving another space's or size's config, the stem's stride not
    following the input size (stride 1 up to 64 pixels), classes or channels dropped."""
    data = SearchData.__new__(SearchData)
    data.__dict__.update(in_channels=3, input_size=size, num_classes=7)
    shape = (3, size, 7)
    assert space_config("darts", "tiny", data) == DartsConfig.tiny(*shape)
    assert space_config("darts", "reference", data) == DartsConfig(*shape, channels=16, layers=8)
    assert space_config("spos", "tiny", data) == SposConfig.tiny(*shape)
    assert space_config("spos", "reference", data) == SposConfig(*shape, stem_stride=stride)
    assert space_config("proxyless", "tiny", data) == ProxylessConfig.tiny(*shape)
    assert space_config("proxyless", "reference", data) == ProxylessConfig(*shape, stem_stride=stride)
    with pytest.raises(ValueError, match="unknown space 'nat'"):
        space_config("nat", "tiny", data)


def test_health_thresholds_are_inclusive_where_documented():
    """Guards against: the near-chance and uniform thresholds moved or made strict the other way,
    a message without its numbers, and the all-zero warning for a partial or zero count."""
    chance = 1 / 10
    edge = Reported(agreement=health.NEAR_CHANCE_FACTOR * chance, num_classes=10)
    assert health.search_health(edge) == []
    below = Reported(agreement=health.NEAR_CHANCE_FACTOR * chance - 1e-9, num_classes=10, measured_on="2 paths")
    assert health.search_health(below) == [
        f"the search ended near chance: val agreement {below.metrics['agreement']:.3f} of 2 paths (chance 0.100 "
        f"with 10 classes); the supernet did not learn, so the architecture it chose means little (train longer "
        f"or check the learning rate)"]
    uniform = math.log(8)
    at = Reported(agreement=0.9, num_classes=10, arch_entropy=health.UNIFORM_FRACTION * uniform,
                  uniform_entropy=uniform)
    assert health.search_health(at) == [
        f"the architecture weights never left uniform: mean entropy {at.metrics['arch_entropy']:.4f} nats, uniform "
        f"{uniform:.4f}; the chosen ops are close to arbitrary (raise arch_lr or the number of architecture steps)"]
    just_below = Reported(agreement=0.9, num_classes=10, arch_entropy=health.UNIFORM_FRACTION * uniform - 1e-9,
                          uniform_entropy=uniform)
    assert health.search_health(just_below) == []
    assert health.search_health(Reported(agreement=0.9, num_classes=10, zero_blocks=0,
                                         zero_capable_blocks=0)) == []
    assert health.search_health(Reported(agreement=0.9, num_classes=10, zero_blocks=2,
                                         zero_capable_blocks=3)) == []
    assert health.search_health(Reported(agreement=0.9, num_classes=10, zero_blocks=3, zero_capable_blocks=3)) == [
        "every block that can be removed (3) chose 'zero': the cost term outweighed the loss, or the supernet had "
        "not learned when the architecture was updated (lower reg_lambda, or more warmup_epochs)"]
    assert health.search_health(Reported(num_classes=10)) == ["no unit of the search has finished: nothing to judge"]
    named = health.search_health(Reported(metric="accuracy", agreement=0.1, num_classes=10))
    assert named[0].startswith("the search ended near chance: val accuracy 0.100 of the supernet (chance")
    assert health.search_health(Reported(agreement=0.9, num_classes=10, zero_blocks=1)) == []


def test_entropies_in_nats():
    """Guards against: 0 log 0 giving nan, entropy along the wrong dimension, a mean that is a sum."""
    probabilities = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    assert health.entropy(probabilities).tolist() == pytest.approx([0.0, math.log(4)])
    assert health.mean_entropy([torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0, 0.0])]) == pytest.approx(
        math.log(2) / 2)
    assert health.mean_uniform_entropy([2, 8]) == pytest.approx((math.log(2) + math.log(8)) / 2)
    assert health.metric_name(True) == "agreement" and health.metric_name(False) == "accuracy"


def test_batch_fitting_boundaries():
    """Guards against: refitting a batch that already gives MIN_STEPS_PER_EPOCH steps or is
    already small, shrinking below MIN_FITTED_BATCH or above the split, and the learning rates
    not scaled with the batch."""
    steps, smallest = health.MIN_STEPS_PER_EPOCH, health.MIN_FITTED_BATCH
    config = SposSearchConfig(batch_size=64, lr=0.4)
    assert health.fit_batch_to_split(config, 64 * steps) == (config, None)
    fitted, notice = health.fit_batch_to_split(config, 64 * steps - 1)
    assert fitted.batch_size == (64 * steps - 1) // steps and fitted.lr == pytest.approx(0.4 * fitted.batch_size / 64)
    assert notice.startswith(f"the training split has {64 * steps - 1} images, {(64 * steps - 1) // 64} batch(es) "
                             f"of 64 per epoch")
    assert f"using batch {fitted.batch_size} ({(64 * steps - 1) // fitted.batch_size} steps per epoch)" in notice
    assert notice.endswith("(scaled with the batch); set steps_per_epoch to keep the batch as given")
    small = SposSearchConfig(batch_size=smallest, lr=0.4)
    assert health.fit_batch_to_split(small, 20) == (small, None)
    tiny_split, _ = health.fit_batch_to_split(SposSearchConfig(batch_size=smallest + 8, lr=0.4), 30)
    assert tiny_split.batch_size == smallest  # floor, not 30 // steps = 3
    fewer, _ = health.fit_batch_to_split(SposSearchConfig(batch_size=64, lr=0.4), 20)
    assert fewer.batch_size == smallest
    # Fewer images than the batch: the whole split is one batch, even below MIN_FITTED_BATCH, but
    # a batch already at or below MIN_FITTED_BATCH is left alone.
    assert health.fit_batch_to_split(config, 10)[0].batch_size == 10
    assert health.fit_batch_to_split(config, 1)[0].batch_size == 1
    assert health.fit_batch_to_split(config, 0) == (config, None)
    assert health.fit_batch_to_split(small, 10) == (small, None)
    both, notice = health.fit_batch_to_split(config, 300, ("lr", "weight_decay"))
    assert both.weight_decay == pytest.approx(config.weight_decay * 30 / 64)
    assert "lr 0.4 -> 0.1875, weight_decay" in notice
