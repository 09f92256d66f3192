"""NAT on the ProxylessNAS space (`--space proxyless`): the genome and its architecture, the
supernet's single paths, the search end to end (front, constraint, resume), a front member
retrained by the train library, and one-line errors for what NAT does not support."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from dfnas.cli.search import main
from dfnas.evaluate.config import TrainConfig
from dfnas.evaluate.run import train_architecture
from dfnas.nas.arch import Architecture
from dfnas.nas.profile import build_latency_table
from dfnas.nas.spaces import get_space
from dfnas.nas.spaces.proxyless import ProxylessConfig, ProxylessNetwork
from dfnas.nas.spaces.spos import SposConfig
from dfnas.nas.strategies.nat_costs import Costs
from dfnas.nas.strategies.nat_nsga import nsga2
from dfnas.nas.strategies.nat_predictors import one_hot
from dfnas.nas.strategies.nat_spaces import PathEncoding
from dfnas.nas.strategies.nat_supernet import ProxylessPathSupernet

from test_nat_front import brute_force_front
from test_nat_search import SMALL, _error, _outputs
from test_search_data import write_tiny_dataset

CONFIG = ProxylessConfig.tiny(1, 8, 4)  # what the tiny preset builds for the 8x8, 4-class test data
ENCODING = PathEncoding.of("proxyless", CONFIG)
PROXYLESS = ["--space", "proxyless"]
FAST_PREDICTORS = ["--predictors", "rbf,trees"]
UNITS = 2 + 1 + 2  # warm-start epochs, initial archive, iterations


def _dataset(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "ds", count=60, num_classes=4)


genomes = st.tuples(*(st.integers(0, count - 1) for count in ENCODING.counts))


def property_settings(examples: int) -> settings:
    """The same examples every run, and no example database (as the other property tests)."""
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None)


MIXED = (5, 6, 3, 2, 1, 6)  # every block off candidate 0, two of them `zero`


def test_the_encoding_has_zero_only_where_a_block_has_a_shortcut():
    """Guards: a genome bound that lets a block without a shortcut pick `zero` (or hides `zero`
    from one that has it)."""
    shortcuts = [spec[-1] for spec in CONFIG.block_specs()]
    assert ENCODING.counts == tuple(7 if shortcut else 6 for shortcut in shortcuts)
    assert False in shortcuts and True in shortcuts  # the tiny space has both kinds


@property_settings(25)
@given(genomes)
@example(MIXED)
def test_random_genomes_round_trip_to_architectures_that_build(path):
    """Guards: a genome index that is not the layout's (and supernet's) candidate index, so the
    file, the costs and the network disagree."""
    arch = ENCODING.architecture(path)
    again = Architecture.from_dict(json.loads(json.dumps(arch.to_dict())))
    assert again == arch
    assert get_space("proxyless").selection(CONFIG, again.choices) == list(path)
    costs = Costs("proxyless", CONFIG, ("macs", "params"), {}, None).of_path(path)
    assert costs["macs"] == pytest.approx(arch.derived["flops"] / 1e6)
    assert costs["params"] == pytest.approx(arch.derived["params"] / 1e6)
    assert arch.build().eval()(torch.zeros(2, 1, 8, 8)).shape == (2, 4)


@property_settings(8)
@given(genomes)
@example(MIXED)
def test_the_supernet_runs_the_path_it_is_given(path):
    """Guards: `forward(x, path)` running another candidate than the genome names (the scores
    would belong to other architectures than the archive records)."""
    torch.manual_seed(0)
    # Training-mode BN (batch statistics): at initialization, eval-mode activations fade to ~0
    # through the blocks, and every path would give the same logits.
    supernet = ProxylessPathSupernet(CONFIG).train()
    choices = ENCODING.choices(path)
    network = ProxylessNetwork(CONFIG, choices).train()
    network.load_state_dict(supernet.subnet_state_dict(choices))
    x = torch.randn(3, 1, 8, 8)
    other = tuple((k + 1) % count for k, count in zip(path, ENCODING.counts))
    with torch.no_grad():
        torch.testing.assert_close(supernet(x, path), network(x))
        assert not torch.allclose(supernet(x, other), network(x), atol=1e-4)  # the comparison can fail


def test_out_of_range_paths_are_refused():
    """Guards: a silently wrapped index (`zero` on a block without a shortcut would index past
    its candidates)."""
    supernet = ProxylessPathSupernet(CONFIG)
    with pytest.raises(ValueError, match="path must be 6 ints"):
        supernet(torch.zeros(1, 1, 8, 8), [6] * 6)


def test_nsga_and_one_hot_respect_per_block_choice_counts():
    """Guards: one bound for every block (NSGA-II would propose `zero` where it is invalid) and
    one-hot blocks that overlap."""
    counts = ENCODING.counts
    population = nsga2(len(counts), counts, lambda g: np.stack([g.sum(1), -g.sum(1)], 1).astype(float), 2, None, 0,
                       np.zeros((0, len(counts)), dtype=np.int64), 16, 5, seed=0)
    assert (population.genomes >= 0).all() and (population.genomes < np.array(counts)).all()
    assert (population.genomes == np.array(counts) - 1).any()  # the top choice of a 7-choice block is reached
    encoded = one_hot([[0, 6, 5, 6, 5, 6]], counts)
    assert encoded.shape == (1, sum(counts)) and encoded.sum() == 6
    assert np.flatnonzero(encoded[0]).tolist() == [0, 6 + 6, 13 + 5, 19 + 6, 26 + 5, 32 + 6]


def _search(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "run"
    argv = ["nat", *PROXYLESS, "--data", str(_dataset(tmp_path)), "--out", str(out), *SMALL, *FAST_PREDICTORS,
            *extra]
    assert main(argv) == 0
    return out


def test_front_is_non_dominated_and_within_max_macs(tmp_path):
    """Guards: costs of another space (SPOS tables) or a constraint that NSGA-II's ragged genome
    ignores."""
    costs = Costs("proxyless", CONFIG, ("macs",), {}, None)
    low, high = costs.extreme("macs", min), costs.extreme("macs", max)
    limit = low + 0.5 * (high - low)
    out = _search(tmp_path, "--max-macs", str(limit))
    archive = json.loads((out / "archive.json").read_text())["members"]
    assert len(archive) == 6 + 2 * 3 and len({tuple(m["path"]) for m in archive}) == len(archive)
    assert all(m["costs"]["macs"] <= limit for m in archive)
    objectives = np.array([[1 - m["agreement"], m["costs"]["macs"]] for m in archive])
    on_front = [i for i, m in enumerate(archive) if m["front_file"]]
    assert on_front == brute_force_front(objectives)
    assert on_front == sorted(NonDominatedSorting().do(objectives, only_non_dominated_front=True).tolist())
    for i in on_front:
        arch = Architecture.load(out / archive[i]["front_file"])
        assert arch.space == "proxyless" and arch.config == CONFIG
        assert list(arch.choices) == ENCODING.choices(archive[i]["path"])
        assert arch.derived["flops"] <= limit * 1e6
        assert arch.derived["flops"] / 1e6 == pytest.approx(archive[i]["costs"]["macs"])
    assert Architecture.load(out / "architecture.json").space == "proxyless"


def test_resume_after_a_clean_stop_gives_the_same_front(tmp_path):
    """Guards: state of the proxyless supernet (sampler, stream, schedule) missing from the
    checkpoint."""
    common = ["nat", *PROXYLESS, "--data", str(_dataset(tmp_path)), *SMALL, *FAST_PREDICTORS]
    assert main(common + ["--out", str(tmp_path / "full")]) == 0
    split = ["--out", str(tmp_path / "split")]
    assert main(common + split + ["--stop-after", "1"]) == 0  # inside the warm start
    assert main(common + split + ["--resume", "--stop-after", str(UNITS - 1)]) == 0  # after iteration 1
    assert not (tmp_path / "split" / "architecture.json").exists()
    assert main(common + split + ["--resume"]) == 0
    assert _outputs(tmp_path / "split") == _outputs(tmp_path / "full")


def test_a_front_member_trains_with_the_train_library(tmp_path):
    """Guards: front files `dfnas-train` cannot read or build."""
    out = _search(tmp_path, "--iterations", "1")
    member = sorted((out / "front").glob("*.json"))[-1]
    config = TrainConfig(data=str(_dataset(tmp_path)), steps=6, batch_size=16, export="none", latency_runs=2)
    outcome = train_architecture(member, config, tmp_path / "train", echo=lambda _: None)
    result = json.loads((tmp_path / "train" / "result.json").read_text())
    assert outcome.ok and result["status"] == "ok" and result["training"]["steps"] == 6
    assert result["macs"] == Architecture.load(member).derived["flops"]


def test_unsupported_spaces_and_mismatched_tables_are_one_line_errors(tmp_path, capsys):
    """Guards: an unsupported space (darts) or another space's latency table reaching the search
    (a traceback, or a run with wrong latencies) instead of exit 2 with nothing written."""
    out = tmp_path / "run"
    common = ["nat", "--data", str(_dataset(tmp_path)), "--out", str(out), *SMALL]
    assert "--space" in _error(capsys, common + ["--space", "darts"])
    assert not out.exists()
    build_latency_table("spos", SposConfig.tiny(1, 8, 4), repeats=1, warmup=0).save(tmp_path / "spos.json")
    err = _error(capsys, common + [*PROXYLESS, "--objectives", "macs,latency", "--latency-table",
                                   str(tmp_path / "spos.json")])
    assert "latency table" in err and "spos" in err
    assert not out.exists()
    low = Costs("proxyless", CONFIG, ("macs",), {}, None).extreme("macs", min)
    err = _error(capsys, common + [*PROXYLESS, "--max-macs", str(low / 2)])
    assert "max_macs" in err and "impossible" in err
    assert not out.exists()


def test_dfnas_run_keeps_spos_and_takes_the_space_from_its_config_file(tmp_path):
    """Guards: `dfnas-run --strategy nat` silently changing space, or its `[search]` table not
    reaching NAT's `space`."""
    from dfnas.evaluate.pipeline import PipelineConfig, stage_settings

    config = PipelineConfig(strategy="nat")
    assert stage_settings(config, {}, tmp_path).search.space == "spos"
    assert stage_settings(config, {"search": {"space": "proxyless"}}, tmp_path).search.space == "proxyless"
