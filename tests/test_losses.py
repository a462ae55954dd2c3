"""Adversarial, feature-matching, embedding-match and hinge losses against hand computation."""

from __future__ import annotations

import pytest
import torch

from talking_heads.losses import (LossWeights, adversarial_loss, embedding_match_loss,
                                  feature_matching_loss, hinge_discriminator_loss)


def test_paper_weights_are_the_defaults() -> None:
    w = LossWeights()
    assert (w.vgg, w.face, w.adversarial, w.feature_matching, w.embedding_match) == (
        0.15, 0.025, 1.0, 10.0, 10.0)


def test_hinge_matches_hand_computation() -> None:
    real = torch.tensor([2.0, 0.5, -1.0])   # max(0, 1 - r): 0, 0.5, 2    -> mean 2.5 / 3
    fake = torch.tensor([-3.0, 0.0, 0.25])  # max(0, 1 + f): 0, 1, 1.25   -> mean 2.25 / 3
    expected = torch.tensor(2.5 / 3 + 2.25 / 3)
    torch.testing.assert_close(hinge_discriminator_loss(real, fake), expected)
    # A confident, correct discriminator pays nothing.
    assert hinge_discriminator_loss(torch.tensor([1.5]), torch.tensor([-1.0])).item() == 0.0


def test_adversarial_is_minus_the_mean_score() -> None:
    torch.testing.assert_close(adversarial_loss(torch.tensor([1.0, -3.0])), torch.tensor(1.0))


def test_feature_matching_matches_hand_computation_and_detaches_real() -> None:
    real = [torch.tensor([[1.0, 2.0]]), torch.tensor([[[0.0, 0.0], [4.0, 4.0]]])]
    fake = [torch.tensor([[0.0, 4.0]], requires_grad=True),
            torch.tensor([[[1.0, -1.0], [4.0, 2.0]]], requires_grad=True)]
    real = [r.requires_grad_(True) for r in real]
    # layer 1: (|0-1| + |4-2|) / 2 = 1.5 ; layer 2: (1 + 1 + 0 + 2) / 4 = 1.0
    loss = feature_matching_loss(real, fake)
    torch.testing.assert_close(loss, torch.tensor(2.5))
    loss.backward()
    assert all(r.grad is None for r in real)
    torch.testing.assert_close(fake[0].grad, torch.tensor([[-0.5, 0.5]]))
    with pytest.raises(ValueError):
        feature_matching_loss(real[:1], fake)


def test_embedding_match_is_mean_absolute_difference() -> None:
    e = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    w = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
    torch.testing.assert_close(embedding_match_loss(e, w), torch.tensor(5.0 / 4))
