"""DARTS space: derivation, search/eval network wiring, published parameter count."""
from __future__ import annotations

import random

import pytest
import torch

from dfnas.nas.profile import count_macs, count_params
from dfnas.nas.spaces.darts import (DARTS_V2, NUM_EDGES, DartsConfig, Genotype, derive_genotype,
                                    edge_offset)
from dfnas.nas.spaces.darts_eval import DartsNetwork
from dfnas.nas.spaces.darts_ops import PRIMITIVES
from dfnas.nas.spaces.darts_search import DartsSearchNetwork




def random_genotype(rng: random.Random) -> Genotype:
    ops = [p for p in PRIMITIVES if p != "none"]

    def cell() -> list[tuple[str, int]]:
        gene = []
        for node in range(4):
            for j in rng.sample(range(node + 2), 2):
                gene.append((rng.choice(ops), j))
        return gene

    return Genotype(cell(), [2, 3, 4, 5], cell(), [2, 3, 4, 5])


def one_hot_alphas(gene: list[tuple[str, int]]) -> torch.Tensor:
    """Alphas whose softmax is exactly one-hot: the genotype's op on its edges, `none` elsewhere."""
    alphas = torch.full((NUM_EDGES, len(PRIMITIVES)), float("-inf"))
    alphas[:, PRIMITIVES.index("none")] = 0.0
    for position, (op, j) in enumerate(gene):
        edge = edge_offset(position // 2) + j
        alphas[edge] = float("-inf")
        alphas[edge, PRIMITIVES.index(op)] = 0.0
    return alphas


def _alphas_and_gene(spec) -> tuple[torch.Tensor, list[tuple[str, int]]]:
    """Alphas where, per node, edge `strong` carries op_a at 5, edge `weaker` op_b at 3, and
    `none` dominates every edge; and the gene DARTS must derive from them."""
    alphas = torch.zeros(NUM_EDGES, len(PRIMITIVES))
    alphas[:, PRIMITIVES.index("none")] = 10.0  # `none` dominating must not matter
    gene = []
    for node, (strong, weaker, op_a, op_b) in enumerate(spec):
        alphas[edge_offset(node) + strong, PRIMITIVES.index(op_a)] = 5.0
        alphas[edge_offset(node) + weaker, PRIMITIVES.index(op_b)] = 3.0
        gene += [(op_a, strong), (op_b, weaker)]
    return alphas, gene


NORMAL_SPEC = [(1, 0, "sep_conv_3x3", "max_pool_3x3"), (2, 0, "dil_conv_5x5", "skip_connect"),
               (3, 1, "avg_pool_3x3", "sep_conv_5x5"), (4, 2, "dil_conv_3x3", "sep_conv_3x3")]
# Different edges and ops on every node: a reduce cell derived from the normal alphas cannot pass.
REDUCE_SPEC = [(0, 1, "max_pool_3x3", "dil_conv_3x3"), (1, 2, "skip_connect", "avg_pool_3x3"),
               (0, 3, "sep_conv_5x5", "dil_conv_5x5"), (3, 0, "skip_connect", "sep_conv_5x5")]


def test_derive_genotype_keeps_two_strongest_non_none_edges_per_node():
    """Guards against: a reduce cell derived from the normal alphas (or the normal from the reduce)."""
    normal, expected_normal = _alphas_and_gene(NORMAL_SPEC)
    reduce, expected_reduce = _alphas_and_gene(REDUCE_SPEC)
    genotype = derive_genotype(normal, reduce)
    assert genotype.normal == expected_normal
    assert genotype.reduce == expected_reduce
    assert genotype.normal_concat == genotype.reduce_concat == [2, 3, 4, 5]


def test_search_network_derives_each_cell_from_its_own_alphas():
    """Guards against: the search network's genotype() reading the normal alphas for the reduce
    cell (the architecture a DARTS search writes)."""
    net = DartsSearchNetwork(DartsConfig.tiny(input_size=8))
    normal, expected_normal = _alphas_and_gene(NORMAL_SPEC)
    reduce, expected_reduce = _alphas_and_gene(REDUCE_SPEC)
    with torch.no_grad():
        net.alphas_normal.copy_(normal)
        net.alphas_reduce.copy_(reduce)
    genotype = net.genotype()
    assert (genotype.normal, genotype.reduce) == (expected_normal, expected_reduce)


def test_search_network_parameters_split_and_copy_keeps_alphas():
    torch.manual_seed(0)
    net = DartsSearchNetwork(DartsConfig.tiny(input_size=16))
    assert [a.shape for a in net.arch_parameters()] == [(14, 8), (14, 8)]
    weights = list(net.weight_parameters())
    assert len(weights) + 2 == len(list(net.parameters()))
    assert all(w is not a for w in weights for a in net.arch_parameters())
    with torch.no_grad():
        net.alphas_normal.normal_()
    copy = net.copy_with_alphas()
    assert torch.equal(copy.alphas_normal, net.alphas_normal)
    assert copy.alphas_normal.data_ptr() != net.alphas_normal.data_ptr()
    assert copy.genotype() == net.genotype()
    x = torch.randn(2, 3, 16, 16)
    loss = net(x).logsumexp(1).sum()
    loss.backward()
    assert net.alphas_normal.grad is not None and net.alphas_normal.grad.abs().sum() > 0
    assert net.alphas_reduce.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_search_network_with_one_hot_alphas_equals_eval_network_with_copied_weights(seed):
    torch.manual_seed(seed)
    genotype = random_genotype(random.Random(seed))
    config = DartsConfig.tiny(input_size=8)
    search = DartsSearchNetwork(config)
    with torch.no_grad():
        search.alphas_normal.copy_(one_hot_alphas(genotype.normal))
        search.alphas_reduce.copy_(one_hot_alphas(genotype.reduce))
        for p in search.weight_parameters():
            p.normal_(0, 0.3)
    evaluation = DartsNetwork(config, genotype)
    result = evaluation.load_state_dict(search.subnet_state_dict(genotype), strict=False)
    assert result.unexpected_keys == []
    # Only the evaluation network's BN scales/shifts (defaults 1/0, like a non-affine BN) are left.
    assert all(k.endswith((".weight", ".bias")) for k in result.missing_keys)
    search.eval(), evaluation.eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        # Search pools carry a non-affine BN; in eval mode with fresh statistics it divides by
        # sqrt(1 + eps), hence the tolerance. Miswiring changes the logits by O(1).
        torch.testing.assert_close(search(x), evaluation(x), rtol=1e-3, atol=1e-4)


def test_eval_network_auxiliary_head_and_drop_path():
    torch.manual_seed(0)
    config = DartsConfig(input_size=16, channels=4, layers=5, auxiliary=True)
    net = DartsNetwork(config, DARTS_V2)
    x = torch.randn(4, 3, 16, 16)
    logits, aux = net.train()(x)
    assert logits.shape == aux.shape == (4, 10)
    assert net.eval()(x).shape == (4, 10)
    net.train()
    net.drop_path_prob = 0.0
    torch.manual_seed(1)
    plain = net(x)[0]
    net.drop_path_prob = 0.5
    torch.manual_seed(1)
    dropped = net(x)[0]
    assert not torch.allclose(plain, dropped)


def test_darts_v2_cifar10_parameter_count_matches_published():
    # DARTS paper (Liu et al. 2019, Table 1) and quark0/darts README: DARTS (2nd order) on
    # CIFAR-10 has 3.3M parameters; the reference cnn/train.py logs "param size = 3.349342MB"
    # (auxiliary head excluded) for DARTS_V2 at 20 cells, 36 channels.
    net = DartsNetwork(DartsConfig.cifar_eval(), DARTS_V2)
    params = count_params(net)
    assert params == 3_349_342
    assert abs(params - 3.3e6) / 3.3e6 < 0.016  # 3.3M is rounded to 0.1M
    assert count_macs(net, (3, 32, 32)) > 0


def test_darts_v2_imagenet_parameter_count_matches_published():
    # quark0/darts README: DARTS on ImageNet (14 cells, 48 channels, mobile setting) has 4.7M params.
    net = DartsNetwork(DartsConfig.imagenet_eval(), DARTS_V2)
    params = count_params(net)
    assert abs(params - 4.7e6) / 4.7e6 < 0.01
    assert net.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("bad, message", [
    ({"normal": DARTS_V2.normal[:7]}, "needs 8"),
    ({"normal": [("conv_9x9", 0)] + DARTS_V2.normal[1:]}, "unknown op 'conv_9x9'"),
    ({"normal": [("none", 0)] + DARTS_V2.normal[1:]}, "unknown op 'none'"),
    ({"reduce": DARTS_V2.reduce[:6] + [("skip_connect", 5), ("max_pool_3x3", 1)]}, "reads input 5"),
    ({"normal": [("sep_conv_3x3", 1)] + DARTS_V2.normal[1:]}, "reads input 1 twice"),
    ({"reduce_concat": [2, 3, 4]}, "reduce_concat must be"),
])
def test_invalid_genotypes_are_rejected_with_the_problem_named(bad, message):
    genotype = DARTS_V2._replace(**bad)
    with pytest.raises(ValueError, match=message):
        DartsNetwork(DartsConfig.tiny(), genotype)
