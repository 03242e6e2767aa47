"""dac (.pth): a descript-layout checkpoint (built from a random transformers DacModel, renamed to descript's
``nn.Sequential`` names with old-style weight norm) converts only with trust_pickle, through weights_only
loading, and matches the reference."""

from __future__ import annotations

import math

import pytest
import torch
from reference_helpers import assert_audio_close

from voxtok.codecs.convert import convert

RATIOS = [2, 4]
HOP = 8


def _descript_state(ref) -> dict[str, torch.Tensor]:
    """transformers' DAC names -> descript-audio-codec's (written independently of the converter: by walking
    descript's module order), each conv weight as weight_g / weight_v with v != w."""
    out = {}
    n = len(RATIOS)
    unit = {"snake1": "block.0", "conv1": "block.1", "snake2": "block.2", "conv2": "block.3"}
    for key, value in ref.state_dict().items():
        p = key.split(".")
        if p[0] == "quantizer":
            new = key
        elif p[0] == "encoder":
            seq = "encoder.block"
            if p[1] in ("conv1",):
                new = f"{seq}.0.{'.'.join(p[2:])}"
            elif p[1] == "snake1":
                new = f"{seq}.{n + 1}.{'.'.join(p[2:])}"
            elif p[1] == "conv2":
                new = f"{seq}.{n + 2}.{'.'.join(p[2:])}"
            else:
                b = int(p[2]) + 1
                if p[3].startswith("res_unit"):
                    new = f"{seq}.{b}.block.{int(p[3][-1]) - 1}.{unit[p[4]]}.{'.'.join(p[5:])}"
                else:
                    new = f"{seq}.{b}.block.{3 if p[3] == 'snake1' else 4}.{'.'.join(p[4:])}"
        else:
            seq = "decoder.model"
            if p[1] == "conv1":
                new = f"{seq}.0.{'.'.join(p[2:])}"
            elif p[1] == "snake1":
                new = f"{seq}.{n + 1}.{'.'.join(p[2:])}"
            elif p[1] == "conv2":
                new = f"{seq}.{n + 2}.{'.'.join(p[2:])}"
            else:
                b = int(p[2]) + 1
                if p[3].startswith("res_unit"):
                    new = f"{seq}.{b}.block.{int(p[3][-1]) + 1}.{unit[p[4]]}.{'.'.join(p[5:])}"
                else:
                    new = f"{seq}.{b}.block.{0 if p[3] == 'snake1' else 1}.{'.'.join(p[4:])}"
        if new.endswith(".weight") and value.dim() == 3:  # a conv: old-style weight norm, v a rescaled w
            base = new[: -len("weight")]
            v = value * torch.empty(value.shape[0], 1, 1).uniform_(0.5, 2.0)
            out[base + "weight_g"] = torch.linalg.vector_norm(value, dim=(1, 2), keepdim=True)
            out[base + "weight_v"] = v
        else:
            out[new] = value
    return out


@pytest.fixture
def pth(tmp_path, speech):
    from transformers import DacConfig, DacModel

    cfg = DacConfig(encoder_hidden_size=4, downsampling_ratios=RATIOS, decoder_hidden_size=16,
                    upsampling_ratios=RATIOS[::-1], hidden_size=16, codebook_size=16, codebook_dim=4,
                    n_codebooks=3, sampling_rate=24000)  # fmt: skip
    ref = DacModel(cfg).eval()
    with torch.no_grad():
        for m in ref.modules():
            if hasattr(m, "alpha"):
                m.alpha.uniform_(0.5, 2.0)
        residual = ref.encoder(speech(24000, 2, 40 * HOP))
        for stage in ref.quantizer.quantizers:  # codebooks from projected residual frames (see test_convert_hf_dac)
            e = stage.in_proj(residual).permute(0, 2, 1).reshape(-1, 4)
            stage.codebook.weight.copy_(e[torch.randperm(e.shape[0])[:16]] * 1.5)
            residual = residual - stage(residual)[0]
    kwargs = {"encoder_dim": 4, "encoder_rates": RATIOS, "latent_dim": 16, "decoder_dim": 16,
              "decoder_rates": RATIOS[::-1], "n_codebooks": 3, "codebook_size": 16, "codebook_dim": 4,
              "quantizer_dropout": False, "sample_rate": 24000}  # fmt: skip
    file = tmp_path / "weights.pth"
    torch.save({"state_dict": _descript_state(ref), "metadata": {"kwargs": kwargs}}, file)
    return ref, file


def test_matches_reference_with_trust_pickle(pth, speech):
    ref, file = pth
    codec = convert("dac", file, trust_pickle=True)
    assert codec.name == "dac-24khz" and codec.num_codebooks == 3
    x = speech(24000, 2, 40 * HOP)
    with torch.no_grad():
        ref_codes = ref.encode(x).audio_codes
        ref_audio = ref.decode(audio_codes=ref_codes).audio_values[:, None]
    assert all(ref_codes[:, q].unique().numel() >= 3 for q in range(3))
    tokens = codec.encode(x)
    assert torch.equal(tokens.codes, ref_codes)
    # weight_g * weight_v / |weight_v| rebuilds w to rounding.
    assert_audio_close(codec.decode(tokens), ref_audio)
    # descript pads to whole hops: ceil frames, as voxtok
    assert codec.encode(x[..., : 40 * HOP - 3]).codes.shape[-1] == math.ceil((40 * HOP - 3) / HOP)


def test_pickle_needs_trust(pth):
    _, file = pth
    with pytest.raises(ValueError, match="trust_pickle"):
        convert("dac", file)


class _Payload:  # an arbitrary object: what a malicious pickle would carry
    pass


def test_weights_only_refuses_objects(tmp_path):
    file = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "metadata": {"kwargs": _Payload()}}, file)
    with pytest.raises(ValueError, match="weights-only"):
        convert("dac", file, trust_pickle=True)


def test_extra_tensor_is_named(pth, tmp_path):
    _, file = pth
    ckpt = torch.load(file, weights_only=True)
    ckpt["state_dict"]["decoder.model.9.alpha"] = torch.ones(1, 4, 1)
    torch.save(ckpt, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"decoder\.model\.9\.alpha"):
        convert("dac", tmp_path / "extra.pth", trust_pickle=True)
