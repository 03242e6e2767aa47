"""The ``Quantizer`` contract, checked on every family: shapes, eval-mode round trip, masks, checkpoints."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from safetensors.torch import load_model, save_model

from voxtok.quantizers import (
    FiniteScalarQuantizer,
    IdentityQuantizer,
    Quantizer,
    QuantizerOutput,
    ResidualFSQ,
    ResidualVectorQuantizer,
    SplitResidualVectorQuantizer,
    VectorQuantizer,
)

D = 6

FACTORIES: dict[str, Callable[[], Quantizer]] = {
    "vq": lambda: VectorQuantizer(D, 16),
    "vq-cosine-lowdim": lambda: VectorQuantizer(D, 16, codebook_dim=3, metric="cosine"),
    "vq-learned-rotation": lambda: VectorQuantizer(D, 16, ema_decay=None, rotation_trick=True),
    "rvq": lambda: ResidualVectorQuantizer(D, 3, [16, 8, 4], quantizer_dropout=0.5),
    "rvq-lowdim": lambda: ResidualVectorQuantizer(D, 2, 8, codebook_dim=2, metric="cosine"),
    "split-rvq": lambda: SplitResidualVectorQuantizer(D, 3, 8, quantizer_dropout=0.5),
    "fsq": lambda: FiniteScalarQuantizer(D, [8, 5, 5, 5]),
    "fsq-groups": lambda: FiniteScalarQuantizer(D, [4, 3, 2], num_codebooks=2),
    "rfsq": lambda: ResidualFSQ(D, [5, 5, 5], 3, quantizer_dropout=0.5),
    "identity": lambda: IdentityQuantizer(D),
    # published variants: options of the generic classes
    "rvq-dac": lambda: ResidualVectorQuantizer.named("dac", dim=D, num_quantizers=3, codebook_size=16,
                                                     codebook_dim=4, quantizer_dropout=0.5),
    "rvq-projected": lambda: ResidualVectorQuantizer(D, 3, 8, code_dim=4),
    "split-rvq-mimi": lambda: SplitResidualVectorQuantizer.named("mimi", dim=D, code_dim=4, num_quantizers=3,
                                                                 codebook_size=8, quantizer_dropout=0.5),
    "fsq-xcodec2": lambda: FiniteScalarQuantizer.named("xcodec2", dim=D, levels=[4, 4, 4]),
}


def _trained(name: str) -> Quantizer:
    q = FACTORIES[name]()
    q.train()
    for _ in range(3):
        q(torch.randn(2, D, 24))
    return q.eval()


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_eval_round_trip_is_bit_exact(name: str) -> None:
    q = _trained(name)
    z = torch.randn(3, D, 17) * 1.5
    out = q(z)
    assert isinstance(out, QuantizerOutput)
    codes = q.encode(z)
    assert codes.dtype == torch.int64 and codes.shape == (3, q.num_codebooks, 17)
    assert torch.equal(codes, out.codes)
    decoded = q.decode(codes)
    assert decoded.shape == z.shape and decoded.dtype == torch.float32
    assert torch.equal(decoded, out.z_q)
    for row, size in enumerate(q.codebook_sizes):
        assert 0 <= int(codes[:, row].min()) and int(codes[:, row].max()) < size


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_training_output_has_contract_shapes(name: str) -> None:
    q = FACTORIES[name]().train()
    z = torch.randn(2, D, 9, requires_grad=True)
    out = q(z)
    assert out.z_q.shape == z.shape
    assert out.codes.shape == (2, q.num_codebooks, 9)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    (out.z_q.sum() + out.loss).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    if name != "identity":
        q_count = q.num_codebooks
        assert out.metrics["perplexity"].shape == (q_count,)
        assert out.metrics["usage"].shape == (q_count,)
        assert ((out.metrics["usage"] > 0) & (out.metrics["usage"] <= 1)).all()


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_safetensors_round_trip_restores_behaviour(name: str, tmp_path) -> None:
    q = _trained(name)
    path = tmp_path / "q.safetensors"
    save_model(q, str(path))
    fresh = FACTORIES[name]()
    load_model(fresh, str(path))
    fresh.eval()
    z = torch.randn(2, D, 11)
    assert torch.equal(fresh.encode(z), q.encode(z))
    assert torch.equal(fresh(z).z_q, q(z).z_q)


def test_ema_state_is_saved_and_derived_constants_are_not() -> None:
    vq = VectorQuantizer(D, 8)
    keys = set(vq.state_dict())
    assert {"codebook", "ema_count", "ema_sum", "initialized"} <= keys
    fsq = FiniteScalarQuantizer(D, [8, 5, 5, 5])
    assert not any(k.startswith("grid.") for k in fsq.state_dict())  # levels, basis: derived, not saved
    assert len(list(fsq.grid.buffers())) > 0


@pytest.mark.parametrize(
    "name", ["vq", "rvq", "fsq", "rfsq", "split-rvq", "rvq-dac", "rvq-projected", "split-rvq-mimi", "fsq-xcodec2"]
)
def test_padding_changes_neither_valid_codes_nor_loss(name: str) -> None:
    """Two frozen copies: a padded batch vs the same valid frames alone. Codes and losses agree."""
    q = _trained(name)
    z = torch.randn(2, D, 10)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    padded = z.clone()
    padded[1, :, 6:] = 1e3  # garbage in the padding
    q.train()
    for module in q.modules():  # no random restarts or dropout: both calls must see the same quantizer
        if isinstance(module, VectorQuantizer):
            module.dead_code_threshold = 0.0
        if hasattr(module, "quantizer_dropout"):
            module.quantizer_dropout = 0.0
    state = {k: v.clone() for k, v in q.state_dict().items()}
    out_padded = q(padded, mask)
    q.load_state_dict(state)
    out_alone_0 = q(z[:1])
    q.load_state_dict(state)
    out_alone_1 = q(z[1:, :, :6])
    assert torch.equal(out_padded.codes[0], out_alone_0.codes[0])
    assert torch.equal(out_padded.codes[1, :, :6], out_alone_1.codes[0])
    if name in ("vq", "rvq", "split-rvq", "rvq-dac", "rvq-projected", "split-rvq-mimi"):
        q.load_state_dict(state)
        joined = torch.cat([z[0], z[1, :, :6]], dim=-1)[None]
        out_joined = q(joined)
        torch.testing.assert_close(out_padded.loss, out_joined.loss, rtol=1e-5, atol=1e-7)
    for key in ("perplexity", "usage"):
        q.load_state_dict(state)
        joined = torch.cat([z[0], z[1, :, :6]], dim=-1)[None]
        torch.testing.assert_close(out_padded.metrics[key], q(joined).metrics[key])


def test_every_quantizer_class_runs_through_the_contract() -> None:
    import voxtok.quantizers as public

    exported = {obj for obj in vars(public).values()
                if isinstance(obj, type) and issubclass(obj, Quantizer) and obj is not Quantizer}  # fmt: skip
    covered = {type(make()) for make in FACTORIES.values()}
    assert exported <= covered, f"not in FACTORIES: {sorted(c.__name__ for c in exported - covered)}"
