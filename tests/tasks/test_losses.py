import math

import pytest
import torch
import torch.nn.functional as F

from qtts.tasks.losses import aam_softmax_loss, equal_error_rate
from qtts.training.schedules import warmup_cosine


def test_aam_without_margin_is_scaled_cosine_cross_entropy():
    torch.manual_seed(0)
    emb, weights, labels = torch.randn(6, 8), torch.randn(4, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    loss, cosine = aam_softmax_loss(emb, weights, labels, margin=0.0, scale=10.0)
    expected_cos = F.normalize(emb) @ F.normalize(weights).T
    torch.testing.assert_close(cosine, expected_cos)
    torch.testing.assert_close(loss, F.cross_entropy(10.0 * expected_cos, labels))


def test_aam_margin_rotates_only_the_true_class():
    emb = torch.tensor([[1.0, 0.0]])
    weights = torch.tensor([[math.cos(0.3), math.sin(0.3)], [0.0, 1.0]])  # true class at 0.3 rad
    loss, cosine = aam_softmax_loss(emb, weights, torch.tensor([0]), margin=0.2, scale=5.0)
    logits = torch.tensor([[5.0 * math.cos(0.5), 5.0 * cosine[0, 1].item()]])
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.tensor([0])))
    plain, _ = aam_softmax_loss(emb, weights, torch.tensor([0]), margin=0.0, scale=5.0)
    assert loss > plain


def test_aam_is_finite_and_trainable_near_the_fold():
    emb = torch.tensor([[-1.0, 0.0]], requires_grad=True)  # opposite to its class: θ + m > π
    weights = torch.tensor([[1.0, 1e-4], [0.0, 1.0]], requires_grad=True)
    loss, _ = aam_softmax_loss(emb, weights, torch.tensor([0]), margin=0.3)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def test_aam_training_separates_classes():
    torch.manual_seed(0)
    centers = F.normalize(torch.randn(3, 16))
    x = centers.repeat_interleave(20, 0) + 0.3 * torch.randn(60, 16)
    y = torch.arange(3).repeat_interleave(20)
    proj = torch.nn.Linear(16, 8)
    head = torch.nn.Parameter(torch.randn(3, 8))
    opt = torch.optim.Adam([*proj.parameters(), head], lr=0.05)
    first = None
    for _ in range(60):
        loss, cosine = aam_softmax_loss(proj(x), head, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    assert (cosine.argmax(-1) == y).float().mean() == 1.0


def test_equal_error_rate():
    same = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    assert equal_error_rate(torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]), same) == 0.0
    assert equal_error_rate(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]), same) == 1.0
    eer = equal_error_rate(torch.tensor([0.9, 0.8, 0.7, 0.3, 0.6, 0.4, 0.2, 0.1]), same)
    assert eer == pytest.approx(0.25)
    assert math.isnan(equal_error_rate(torch.rand(4), torch.ones(4, dtype=torch.bool)))


def test_warmup_cosine():
    f = warmup_cosine(warmup=10, total=110, floor=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 120))
