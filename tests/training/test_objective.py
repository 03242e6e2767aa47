"""Losses and discriminators built from recipe dicts: GAN terms per discriminator, straight-through codebook outputs
for distillation, and cached teacher features sliced to each crop."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import voxtok
from voxtok.losses import SSLDistillation, TeacherFeatureCache, discriminator_loss
from voxtok.training.objective import Objective, build_discriminators


def test_discriminator_weights_and_kinds_apply_per_discriminator() -> None:
    discs, weights, kinds = build_discriminators({"mpd": {"tiny": True, "weight": 0.5, "kind": "lsgan"},
                                                  "mrd": {"tiny": True}})  # fmt: skip
    assert weights == {"mpd": 0.5, "mrd": 1.0} and kinds == {"mpd": "lsgan", "mrd": None}
    x, y = torch.randn(2, 1, 800), torch.randn(2, 1, 800)
    terms = Objective.discriminator(discs, weights, kinds, "hinge", "sum", x, y)
    real, _ = discs["mpd"](x)
    fake, _ = discs["mpd"](y)
    torch.testing.assert_close(terms["mpd"], 0.5 * discriminator_loss(real, fake, "lsgan"))
    real, _ = discs["mrd"](x)
    fake, _ = discs["mrd"](y)
    torch.testing.assert_close(terms["mrd"], discriminator_loss(real, fake, "hinge"))
    with pytest.raises(ValueError, match="cannot build discriminator 'mpd'"):
        build_discriminators({"mpd": {"channel": 3}})


def test_first_codebooks_are_taken_straight_through() -> None:
    codec = voxtok.load("dmcodec-50hz-tiny").train()
    latents = torch.randn(2, codec.quantizer.dim, 7, requires_grad=True)
    q = codec.quantizer(latents)
    out = SimpleNamespace(latents=latents, quantizer=q)
    z1 = Objective._latents(codec, out, 1)
    torch.testing.assert_close(z1, codec.quantizer.decode(q.codes[:, :1]))
    g = torch.randn_like(z1)
    (z1 * g).sum().backward()
    torch.testing.assert_close(latents.grad, g)  # the identity, as the quantizer's own straight-through
    assert Objective._latents(codec, out, "quantized") is q.z_q and Objective._latents(codec, out, "encoder") is latents


def test_cached_teacher_features_are_sliced_to_the_crop(tmp_path: Path) -> None:
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    teacher = HubertModel(HubertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                                       conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4),
                                       num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2))  # fmt: skip
    teacher.save_pretrained(tmp_path / "t")
    obj = Objective({"ssl": {"weight": 1.0, "teacher": str(tmp_path / "t"), "cache": str(tmp_path / "cache")}},
                    codec_dim=8, sample_rate=16000, num_discriminators=0)  # fmt: skip
    distill: SSLDistillation = obj.terms["ssl"]
    utterance = torch.randn(1, 16000) * 0.1
    obj.caches["ssl"].precompute(distill, [("u1", utterance, 16000)])
    full = TeacherFeatureCache.for_teacher(tmp_path / "cache", distill).get("u1")  # about 800 frames of 20 samples
    n = full.shape[0]
    assert 790 < n <= 800
    batch = {"id": ["u1"], "offset": torch.tensor([4000]), "lengths": torch.tensor([2000]),
             "total": torch.tensor([16000])}  # samples 4000-6000 of 16000: the frames covering 1/4 to 3/8 of it
    feats, lengths = obj._cached("ssl", batch, torch.device("cpu"))
    f0, f1 = 4000 * n // 16000, -(-6000 * n // 16000)
    assert lengths.tolist() == [f1 - f0] and torch.equal(feats[0], full[f0:f1])
    batch["id"] = ["u2"]  # not cached: the caller falls back to running the teacher
    assert obj._cached("ssl", batch, torch.device("cpu")) is None


def test_reconstruction_terms_are_float32_under_bf16_autocast() -> None:
    losses = {"mel": {"weight": 1.0, "window_lengths": [256, 512], "n_mels": [20, 40]},
              "stft": {"weight": 1.0, "fft_sizes": [256, 512], "hop_lengths": [64, 128], "win_lengths": [256, 512]},
              "envelope": {"weight": 1.0}}
    obj = Objective(losses, 8, 16000, 0)
    torch.manual_seed(0)
    x, y = torch.randn(2, 1, 12800), torch.randn(2, 1, 12800)
    plain = obj.reconstruction(y, x, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = obj.reconstruction(y.bfloat16(), x, None)  # a bf16 decoder output, as under bf16-mixed
    assert set(mixed) == {"mel", "stft", "envelope"}
    for name, value in mixed.items():
        assert value.dtype == torch.float32, name
        # Only the input's rounding to bf16 differs, not the loss arithmetic (which bf16 would change by ~1e-2).
        torch.testing.assert_close(value, obj.terms[name](y.bfloat16().float(), x, None), rtol=1e-6, atol=1e-6)
        assert abs(float(value) - float(plain[name])) < 0.05 * float(plain[name])
