"""Published quantizer variants, which are options of the generic classes: DAC's raw-codebook lookup, Mimi's
per-group projection, X-codec2's double-bounded FSQ. (The contract itself runs over them in test_contract.py.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from voxtok.codecs.parts import build_part
from voxtok.quantizers import FiniteScalarQuantizer, ResidualVectorQuantizer, SplitResidualVectorQuantizer


def _dac(**kw) -> ResidualVectorQuantizer:
    return ResidualVectorQuantizer.named("dac", dim=8, codebook_size=16, codebook_dim=4, **kw)


def test_dac_eval_contract_and_raw_lookup():
    q = _dac(num_quantizers=3).eval()
    z = torch.randn(2, 8, 11)
    out = q(z)
    codes = q.encode(z)
    assert torch.equal(out.codes, codes) and codes.shape == (2, 3, 11)
    assert torch.equal(q.decode(codes), out.z_q)
    stage = q.stages[0]
    # search: cosine between the projected latent and each row; decode: the raw (unnormalised) row.
    e = stage.project_in(z.permute(0, 2, 1))
    sim = F.normalize(e, dim=-1) @ F.normalize(stage.codebook, dim=-1).T
    assert torch.equal(sim.argmax(-1), codes[:, 0])
    raw = stage.project_out(stage.codebook[codes[:, 0]]).permute(0, 2, 1)
    torch.testing.assert_close(q.decode(codes[:, :1]), raw)
    assert not torch.allclose(stage.codebook.norm(dim=-1), torch.ones(16))  # starts unnormalised, as DAC


def test_dac_training_step_reaches_codebook_and_projections():
    q = _dac(num_quantizers=2, quantizer_dropout=0.5).train()
    z = torch.randn(3, 8, 7, requires_grad=True)
    out = q(z, mask=torch.ones(3, 7, dtype=torch.bool))
    (out.z_q.square().mean() + out.loss).backward()
    assert z.grad is not None and q.stages[0].codebook.grad.abs().sum() > 0
    assert q.stages[0].project_in.weight.grad.abs().sum() > 0


def test_mimi_split_rvq_contract_and_shared_projection():
    q = SplitResidualVectorQuantizer.named("mimi", dim=8, code_dim=4, num_quantizers=4, codebook_size=16,
                                           kmeans_init=False).eval()  # fmt: skip
    z = torch.randn(2, 8, 9)
    out = q(z)
    assert torch.equal(out.codes, q.encode(z)) and torch.equal(q.decode(out.codes), out.z_q)
    # the residual lives in the projected space: stage 2 of the acoustic group quantizes P z - c_1
    ac = q.acoustic
    e = torch.einsum("oi,bit->bot", ac.input_proj.weight, z)
    c1 = ac.stages[0].codebook[out.codes[:, 1]].permute(0, 2, 1)
    d = torch.cdist((e - c1).permute(0, 2, 1), ac.stages[1].codebook[None].expand(2, -1, -1))
    assert torch.equal(d.argmin(-1), out.codes[:, 2])
    assert q.encode(z, n_q=2).shape == (2, 2, 9)
    q.train()
    z.requires_grad_(True)
    loss = q(z).loss + q(z).z_q.sum()
    loss.backward()
    assert z.grad is not None and ac.input_proj.weight.grad.abs().sum() > 0


def test_double_bounded_fsq():
    q = FiniteScalarQuantizer.named("xcodec2", dim=12).eval()
    plain = FiniteScalarQuantizer(dim=12, levels=[4] * 8).eval()
    plain.load_state_dict(q.state_dict())
    z = 3 * torch.randn(2, 12, 30)
    codes = q.encode(z)
    # the codes of the once-bounded projection under the plain FSQ (whose projection is then the identity)
    e = q.grid.bound(torch.einsum("oi,bit->bto", q.project_in.weight, z) + q.project_in.bias)
    assert torch.equal(codes[:, 0], q.grid.quantize(e)[1])
    assert not torch.equal(codes, plain.encode(z))  # the second bound matters
    torch.testing.assert_close(q.decode(codes), plain.decode(codes))  # decoding is FSQ's
    assert torch.equal(q(z).codes, codes)


def test_old_class_names_in_configs_build_the_options():
    dac = build_part({"class": "DACResidualVectorQuantizer",
                      "args": {"dim": 8, "num_quantizers": 2, "codebook_size": 16, "codebook_dim": 4}})  # fmt: skip
    assert type(dac) is ResidualVectorQuantizer and dac.stages[0].raw_lookup and dac.stages[0].ema_decay is None
    mimi = build_part({"class": "MimiSplitResidualVectorQuantizer",
                       "args": {"dim": 8, "code_dim": 4, "num_quantizers": 3, "codebook_size": 16}})  # fmt: skip
    assert type(mimi) is SplitResidualVectorQuantizer and mimi.semantic.input_proj.weight.shape == (4, 8)
    fsq = build_part({"class": "XCodec2FiniteScalarQuantizer", "args": {"dim": 12, "levels": [4] * 8}})
    assert type(fsq) is FiniteScalarQuantizer and fsq.bound_input
