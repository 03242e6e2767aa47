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


def test_mimi_split_rvq_contract_and_shared_projection():
    from voxtok.models.mimi_quantizer import MimiSplitResidualVectorQuantizer

    q = MimiSplitResidualVectorQuantizer(dim=8, code_dim=4, num_quantizers=4, codebook_size=16,
                                         kmeans_init=False).eval()
    z = torch.randn(2, 8, 9)
    out = q(z)
    assert torch.equal(out.codes, q.encode(z)) and torch.equal(q.decode(out.codes), out.z_q)
    # the residual lives in the projected space: stage 2 of the acoustic group quantizes P z - c_1
    ac = q.acoustic
    e = torch.einsum("oi,bit->bot", ac.input_proj.weight, z)
    c1 = ac.rvq.stages[0].codebook[out.codes[:, 1]].permute(0, 2, 1)
    d = torch.cdist((e - c1).permute(0, 2, 1), ac.rvq.stages[1].codebook[None].expand(2, -1, -1))
    assert torch.equal(d.argmin(-1), out.codes[:, 2])
    assert q.encode(z, n_q=2).shape == (2, 2, 9)
    q.train()
    z.requires_grad_(True)
    loss = q(z).loss + q(z).z_q.sum()
    loss.backward()
    assert z.grad is not None and ac.input_proj.weight.grad.abs().sum() > 0
