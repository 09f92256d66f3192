"""The loss terms equal their definitions; the hooks measure BatchNorm *inputs*."""
from __future__ import annotations

import re
import warnings

import pytest
import torch
import torch.nn.functional as F

from dfnas.synth.hooks import BNStatHooks
from dfnas.synth.losses import LossWeights, class_loss, l2_prior, synthesis_loss


def test_class_loss_is_ce_for_hard_and_soft_ce_for_soft_targets():
    logits = torch.randn(6, 5, dtype=torch.float64)
    hard = torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.allclose(class_loss(logits, hard), F.cross_entropy(logits.float(), hard))
    soft = torch.softmax(torch.randn(6, 5), dim=1)
    log_p = torch.log_softmax(logits.float(), dim=1)
    expected = -sum(float((soft[n] * log_p[n]).sum()) for n in range(6)) / 6
    assert abs(float(class_loss(logits, soft)) - expected) < 1e-5
    # Soft CE = KL + entropy of the targets (so it is minimized at logits matching the targets).
    kl = F.kl_div(log_p, soft, reduction="batchmean")
    entropy = -(soft * soft.log()).sum(1).mean()
    assert torch.allclose(class_loss(logits, soft), kl + entropy, atol=1e-5)


def test_soft_target_loss_names_the_class_dimension():
    """Guards against (issue 15, mutation testing) `log_softmax` without `dim=1`: torch then picks
    the dimension implicitly and warns on every synthesis step of rounds k > 0."""
    logits, soft = torch.randn(4, 3), torch.softmax(torch.randn(4, 3), dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        class_loss(logits, soft)


def test_priors_and_total_follow_the_definition():
    x = torch.randn(3, 2, 7, 9)
    right, down = x[..., :, :-1] - x[..., :, 1:], x[..., :-1, :] - x[..., 1:, :]
    diag1, diag2 = x[..., 1:, :-1] - x[..., :-1, 1:], x[..., :-1, :-1] - x[..., 1:, 1:]
    tv2 = sum(d.norm() for d in (right, down, diag1, diag2))
    tv1 = sum(d.abs().mean() for d in (right, down, diag1, diag2))
    l2 = torch.stack([x[n].norm() for n in range(3)]).mean()
    assert torch.allclose(l2_prior(x), l2)
    logits, targets, bn = torch.randn(3, 4), torch.tensor([0, 1, 3]), torch.tensor(2.5)
    weights = LossWeights(r_feature=0.01, tv_l2=1e-4, tv_l1=0.5, l2=1e-5)
    terms = synthesis_loss(logits, targets, bn, x, weights)
    expected = F.cross_entropy(logits, targets) + 0.01 * 2.5 + 1e-4 * tv2 + 0.5 * tv1 + 1e-5 * l2
    assert torch.allclose(terms.total, expected, atol=1e-6)
    assert torch.allclose(terms.tv_l2, tv2) and torch.allclose(terms.tv_l1, tv1)


def test_zero_weight_terms_are_skipped_but_total_is_unchanged():
    x = torch.randn(2, 1, 5, 5)
    logits, targets, bn = torch.randn(2, 3), torch.tensor([0, 2]), torch.tensor(1.0)
    terms = synthesis_loss(logits, targets, bn, x, LossWeights(r_feature=1.0, tv_l2=0.0, tv_l1=0.0, l2=0.0))
    # (issue 15: the TV-l1 term was not checked, so computing it at weight 0 went unnoticed.)
    assert float(terms.tv_l2) == 0.0 and float(terms.tv_l1) == 0.0 and float(terms.l2) == 0.0
    assert torch.allclose(terms.total, F.cross_entropy(logits, targets) + 1.0)


def test_hooks_measure_batchnorm_inputs_with_first_layer_weighted(tiny_teacher):
    model = tiny_teacher.model
    bn_layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    captured = {}
    handles = [bn.register_forward_pre_hook(lambda m, inputs, i=i: captured.__setitem__(i, inputs[0].detach().clone()))
               for i, bn in enumerate(bn_layers)]
    hooks = BNStatHooks(model, first_bn_multiplier=10.0)
    model(torch.randn(4, 1, 28, 28))
    for handle in handles:
        handle.remove()
    expected = []
    for i, bn in enumerate(bn_layers):
        x = captured[i]
        mean = x.mean(dim=(0, 2, 3))
        var = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1).var(dim=1, unbiased=False)
        expected.append((mean - bn.running_mean).norm() + (var - bn.running_var).norm())
    assert torch.allclose(torch.stack(hooks.losses), torch.stack(expected), rtol=1e-5)
    total = hooks.weighted_sum()
    assert torch.allclose(total, 10 * expected[0] + sum(expected[1:]), rtol=1e-5)
    hooks.remove()


def test_hooks_reject_a_teacher_without_batchnorm():
    with pytest.raises(ValueError) as error:
        BNStatHooks(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)))
    assert str(error.value) == "the teacher has no BatchNorm2d layer: the BN-statistics loss needs at least one"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_hooks_reject_a_torchscript_teacher_with_a_clear_message(tiny_teacher):
    scripted = torch.jit.script(tiny_teacher.model)
    with pytest.raises(ValueError) as error:
        BNStatHooks(scripted)
    # The whole message (issue 15: a mangled hint about how to load the teacher went unnoticed).
    assert str(error.value) == (
        "TorchScript teachers cannot be synthesized from: the BN-statistics loss needs forward hooks, which "
        "TorchScript modules do not support; load the teacher as 'package.module:factory' with its weights instead")


def test_removed_hooks_measure_nothing_and_remove_twice_is_harmless(tiny_teacher):
    """Guards against (issue 15, mutation testing) `remove` leaving a hook on the teacher (a closed
    Synthesizer's teacher would keep computing BN losses on every later forward) and a second
    `remove` (e.g. `Synthesizer.close()` twice) failing because the handle list became None."""
    model = tiny_teacher.model
    hooks = BNStatHooks(model)
    hooks.remove()
    model(torch.randn(2, 1, 28, 28))
    assert hooks.losses == [None] * len(hooks.layers)
    assert all(not layer._forward_hooks for layer in hooks.layers)
    hooks.remove()


def test_weighted_sum_names_the_layers_that_did_not_run(tiny_teacher):
    """Guards against (issue 15, mutation testing) the check for layers that did not fire being
    lost (a TypeError on None instead) or its message losing the layer indices."""
    hooks = BNStatHooks(tiny_teacher.model)
    hooks.enabled = False
    tiny_teacher.model(torch.randn(2, 1, 28, 28))
    every = list(range(len(hooks.layers)))
    with pytest.raises(RuntimeError, match=rf"^BatchNorm layers {re.escape(str(every))} did not run"):
        hooks.weighted_sum()
    hooks.remove()


def test_the_first_layer_weighs_ten_by_default(tiny_teacher):
    """Guards against (issue 15, mutation testing) a changed default of `first_bn_multiplier`
    (docs/synthesis.md: x10 on the first BN layer in `modules()` order, x1 on the others)."""
    hooks = BNStatHooks(tiny_teacher.model)
    assert hooks.weights == [10.0] + [1.0] * (len(hooks.layers) - 1)
    hooks.remove()
