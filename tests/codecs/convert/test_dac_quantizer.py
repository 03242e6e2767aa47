"""DACResidualVectorQuantizer: the RVQ contract, and DAC's raw-codebook decoding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from voxtok.models.dac_quantizer import DACResidualVectorQuantizer


def test_eval_contract_and_raw_lookup():
    q = DACResidualVectorQuantizer(dim=8, num_quantizers=3, codebook_size=16, codebook_dim=4).eval()
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


def test_training_step_reaches_codebook_and_projections():
    q = DACResidualVectorQuantizer(dim=8, num_quantizers=2, codebook_size=16, codebook_dim=4,
                                   quantizer_dropout=0.5).train()
    z = torch.randn(3, 8, 7, requires_grad=True)
    out = q(z, mask=torch.ones(3, 7, dtype=torch.bool))
    (out.z_q.square().mean() + out.loss).backward()
    assert z.grad is not None and q.stages[0].codebook.grad.abs().sum() > 0
    assert q.stages[0].project_in.weight.grad.abs().sum() > 0
