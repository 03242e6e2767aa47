"""GAN and feature-matching losses over lists of discriminator outputs, with tiny stand-in discriminators."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from voxtok.losses import AdversarialLoss, FeatureMatchingLoss, discriminator_loss, generator_loss


class TinyDisc(nn.Module):
    """Two sub-discriminators of two Conv1d each, returning ``(logits, features)`` like voxtok's."""

    def __init__(self) -> None:
        super().__init__()
        self.subs = nn.ModuleList(
            nn.ModuleList([nn.Conv1d(1, 4, 9, stride=s, padding=4), nn.Conv1d(4, 1, 3, padding=1)]) for s in (1, 2)
        )

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        logits, features = [], []
        for conv, head in self.subs:
            h = torch.nn.functional.leaky_relu(conv(audio), 0.2)
            out = head(h)
            logits.append(out)
            features.append([h, out])
        return logits, features


def test_hinge_and_lsgan_values() -> None:
    real = [torch.tensor([2.0, 0.5]), torch.tensor([[1.0]])]
    fake = [torch.tensor([-2.0, 0.0]), torch.tensor([[0.5]])]
    # hinge D: sub 0: mean(0, .5) + mean(0, 1) = .75; sub 1: 0 + 1.5
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(0.75 + 1.5)
    assert discriminator_loss(real, fake, "hinge", reduction="mean").item() == pytest.approx((0.75 + 1.5) / 2)
    # lsgan D: sub 0: mean(1, .25) + mean(4, 0) = 2.625; sub 1: 0 + .25
    assert discriminator_loss(real, fake, "lsgan").item() == pytest.approx(2.625 + 0.25)
    # generators: hinge mean(relu(1 - f)): (3 + 1)/2 + .5; lsgan mean((1 - f)^2): (9 + 1)/2 + .25
    assert generator_loss(fake, "hinge").item() == pytest.approx(2.5)
    assert generator_loss(fake, "lsgan").item() == pytest.approx(5.25)
    assert AdversarialLoss("lsgan")(fake).item() == pytest.approx(5.25)


@pytest.mark.parametrize("kind", ["hinge", "lsgan"])
def test_training_stand_in_discriminator_separates_real_and_fake(kind: str) -> None:
    disc = TinyDisc()
    adv = AdversarialLoss(kind)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-2)
    t = torch.arange(400) / 8000
    real = (0.5 * torch.sin(2 * torch.pi * 300 * t)).expand(4, 1, -1)
    fake = 0.3 * torch.randn(4, 1, 400)
    first = None
    for _ in range(40):
        loss = adv.discriminator(disc(real)[0], disc(fake.detach())[0])
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    # the trained discriminator now scores real above fake, so the generator loss on fakes exceeds that on reals
    with torch.no_grad():
        assert adv.generator(disc(fake)[0]) > adv.generator(disc(real)[0])


def test_generator_gradient_flows_to_fake_audio() -> None:
    disc = TinyDisc()
    fake = torch.randn(2, 1, 400, requires_grad=True)
    logits, _ = disc(fake)
    AdversarialLoss("lsgan").generator(logits).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


@pytest.mark.parametrize("relative", [False, True])
def test_feature_matching(relative: bool) -> None:
    disc = TinyDisc()
    fm = FeatureMatchingLoss(relative=relative)
    real = torch.randn(2, 1, 400)
    fake = real.clone().requires_grad_(True)
    _, f_real = disc(real)
    _, f_fake = disc(fake)
    assert fm(f_real, f_fake).item() == 0.0
    fake2 = (real + 0.1 * torch.randn_like(real)).requires_grad_(True)
    _, f_real = disc(real)
    _, f_fake = disc(fake2)
    value = fm(f_real, f_fake)
    assert value.item() > 0
    disc.zero_grad()
    value.backward()
    assert fake2.grad.abs().sum() > 0
    # real features are detached: the loss cannot move the discriminator through its real branch alone
    _, f_real = disc(real)
    f_fake_detached = [[f.detach() for f in sub] for sub in disc(fake2)[1]]
    assert not fm(f_real, f_fake_detached).requires_grad


def test_relative_feature_matching_is_scale_free_and_matches_definition() -> None:
    real = [[torch.randn(2, 4, 50), torch.randn(2, 1, 50) * 100]]
    fake = [[r * (1 + 0.1 * torch.randn_like(r)) for r in real[0]]]
    expected = torch.stack([(r - f).abs().mean() / r.abs().mean() for r, f in zip(real[0], fake[0], strict=True)])
    rel = FeatureMatchingLoss(relative=True)
    assert rel(real, fake).item() == pytest.approx(expected.mean().item(), rel=1e-6)
    scaled = rel([[10 * r for r in real[0]]], [[10 * f for f in fake[0]]])
    assert scaled.item() == pytest.approx(rel(real, fake).item(), rel=1e-5)
    # absolute L1 is dominated by the large layer; relative is not
    absolute = FeatureMatchingLoss()(real, fake).item()
    assert absolute > 10 * rel(real, fake).item()


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="kind"):
        AdversarialLoss("wasserstein")
    with pytest.raises(ValueError, match="one entry per sub-discriminator"):
        discriminator_loss([torch.ones(2)], [torch.ones(2), torch.ones(2)])
    with pytest.raises(ValueError, match="empty"):
        generator_loss([])
    with pytest.raises(ValueError, match="feature map 0"):
        FeatureMatchingLoss()([[torch.ones(1, 2, 10)]], [[torch.ones(1, 2, 9)]])
