"""The PruningNet: before training it is exactly the magnitude-pruned teacher at every ratio vector;
its forward is the pruned network's; training on teacher labels lowers the KL of unseen ratio
vectors; a killed training resumes exactly; networks it cannot serve are named."""
from __future__ import annotations

import random

import torch
from torch import nn

from dfnas.checkpoint import Checkpointer
from dfnas.data.images import Batch, ImageSet
from dfnas.nas.loss import distillation_kl
from dfnas.prune.channels import ChannelSpace
from dfnas.prune.pruning_net import PruningNet, unsuitable_reason
from dfnas.prune.pruning_net_training import PruningNetTrainer
from dfnas.prune.search import Budget, RatioEvolution
from prune_teachers import ResNetLike, plain_cnn

SHAPE = (1, 8, 8)
GRID = tuple(round(0.1 + 0.03 * i, 2) for i in range(31))


def _teacher() -> nn.Module:
    torch.manual_seed(0)
    model = ResNetLike()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def _random_ratios(space: ChannelSpace, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.choice(GRID) for _ in range(len(space))]


def test_an_untrained_pruning_net_is_the_magnitude_pruned_teacher():
    """start: the generators start at zero, so every candidate gets the teacher's ranked weights."""
    space = ChannelSpace(_teacher(), SHAPE)
    torch.manual_seed(1)
    net = PruningNet(space).eval()
    x = torch.randn(4, *SHAPE)
    for seed in range(4):
        ratios = _random_ratios(space, seed)
        pruned = space.prune(space.keep_counts(ratios)).eval()
        made = net.materialize(ratios)
        for (name, expected), (other, actual) in zip(pruned.state_dict().items(), made.state_dict().items()):
            assert name == other and torch.equal(expected, actual), name
        with torch.no_grad():
            torch.testing.assert_close(net(x, ratios), pruned(x), rtol=0, atol=0)


def _setup(tmp_path, steps: int):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (240, 1, 10, 10), generator=generator, dtype=torch.uint8)
    targets = torch.zeros(240, dtype=torch.long)  # unused: the teacher labels every batch
    train = ImageSet(images[:200], None, targets[:200], (8, 8), [0.5], [0.25])
    val = ImageSet(images[200:], None, targets[200:], (8, 8), [0.5], [0.25])
    teacher = _teacher()
    space = ChannelSpace(teacher, SHAPE)
    budget = Budget(0.2 * space.teacher_macs, 0.3 * space.teacher_macs)
    macs_of = lambda ratios: space.macs(space.keep_counts(ratios))  # noqa: E731

    def label(batch: Batch) -> Batch:
        with torch.no_grad():
            return Batch(batch.images, teacher(batch.images), batch.targets)

    def make():
        torch.manual_seed(0)
        net = PruningNet(space)
        sampler = RatioEvolution(GRID, len(space), budget, macs_of, None, population=4, parents=2,
                                 mutation_prob=0.1, seed=1)
        return net, PruningNetTrainer(net, train, label, sampler, steps=steps, batch_size=32, lr=1e-3,
                                      temperature=1.0, seed=0)

    return val, space, budget, label, make


def test_training_lowers_the_kl_of_ratio_vectors_it_never_saw(tmp_path):
    val, space, budget, label, make = _setup(tmp_path, steps=150)
    net, trainer = make()
    held_out = RatioEvolution(GRID, len(space), budget, lambda r: space.macs(space.keep_counts(r)), None,
                              population=4, parents=2, mutation_prob=0.1, seed=99)
    vectors = [held_out.ratios(g) for g in (held_out.random_genome() for _ in range(8)) if g is not None]
    batch = label(val.fixed_batches(40, limit=1)[0])

    def kl() -> float:
        net.train()  # batch statistics, as during training
        with torch.no_grad():
            return sum(float(distillation_kl(net(batch.images, r), batch.soft_labels, 1.0)) for r in vectors)

    before = kl()
    trainer.run(Checkpointer(tmp_path / "net.pt"), {})
    assert kl() < 0.7 * before


def test_a_resumed_training_ends_with_the_same_weights(tmp_path):
    _, _, _, _, make = _setup(tmp_path, steps=24)
    whole, trainer = make()
    trainer.run(Checkpointer(tmp_path / "whole.pt"), {}, save_every=100)
    _, first = make()
    first.steps = 16
    first.run(Checkpointer(tmp_path / "part.pt"), {}, save_every=8)
    resumed, second = make()
    second.load_state_dict(Checkpointer(tmp_path / "part.pt").load())
    assert second.step == 16
    second.run(Checkpointer(tmp_path / "part.pt"), {})
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert trainer.losses == second.losses


def test_networks_a_pruning_net_cannot_serve_are_named():
    assert unsuitable_reason(ChannelSpace(plain_cnn(), SHAPE), 32) is None
    grouped = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, groups=4), nn.BatchNorm2d(4),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    assert "grouped convolution" in unsuitable_reason(ChannelSpace(grouped, SHAPE), 32)
    prelu = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.PReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 10))
    assert "PReLU" in unsuitable_reason(ChannelSpace(prelu, SHAPE), 32)
