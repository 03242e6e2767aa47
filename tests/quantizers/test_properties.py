"""Property tests over shapes, dims and codebook sizes (hypothesis)."""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxtok.quantizers import FiniteScalarQuantizer, ResidualFSQ, ResidualVectorQuantizer, VectorQuantizer

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    b=st.integers(1, 3),
    t=st.integers(1, 12),
    dim=st.integers(1, 8),
    k=st.integers(1, 40),
    codebook_dim=st.one_of(st.none(), st.integers(1, 4)),
    metric=st.sampled_from(["l2", "cosine"]),
    learned=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_vq_contract_holds_for_any_shape(b, t, dim, k, codebook_dim, metric, learned, seed) -> None:
    torch.manual_seed(seed)
    vq = VectorQuantizer(dim, k, codebook_dim=codebook_dim, metric=metric, ema_decay=None if learned else 0.9)
    z = torch.randn(b, dim, t)
    lengths = torch.randint(0, t + 1, (b,))
    mask = torch.arange(t)[None] < lengths[:, None]
    out = vq.train()(z, mask)
    assert out.codes.shape == (b, 1, t) and out.z_q.shape == z.shape
    assert torch.isfinite(out.loss) and torch.isfinite(vq.codebook).all()
    assert 0.0 <= float(out.metrics["usage"][0]) <= 1.0
    assert float(out.metrics["perplexity"][0]) <= min(k, int(mask.sum())) + 1e-3
    vq.eval()
    codes = vq.encode(z)
    assert int(codes.min()) >= 0 and int(codes.max()) < k
    assert torch.equal(vq.decode(codes), vq(z).z_q)


@SETTINGS
@given(
    b=st.integers(1, 3),
    t=st.integers(1, 10),
    dim=st.integers(1, 6),
    sizes=st.lists(st.integers(1, 16), min_size=1, max_size=4),
    n_q=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_rvq_prefixes_for_any_sizes(b, t, dim, sizes, n_q, seed) -> None:
    torch.manual_seed(seed)
    rvq = ResidualVectorQuantizer(dim, len(sizes), sizes)
    rvq.train()(torch.randn(2, dim, 16))
    rvq.eval()
    z = torch.randn(b, dim, t)
    n = min(n_q, len(sizes))
    codes = rvq.encode(z, n_q=n)
    assert codes.shape == (b, n, t)
    for i in range(n):
        assert int(codes[:, i].max()) < sizes[i]
    assert torch.equal(codes, rvq.encode(z)[:, :n])
    assert rvq.decode(codes).shape == z.shape
    assert torch.equal(rvq.decode(rvq.encode(z)), rvq(z).z_q)


@SETTINGS
@given(
    levels=st.lists(st.integers(2, 9), min_size=1, max_size=4),
    groups=st.integers(1, 3),
    dim=st.integers(1, 10),
    t=st.integers(1, 10),
    residual=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fsq_codes_in_range_and_round_trip(levels, groups, dim, t, residual, seed) -> None:
    torch.manual_seed(seed)
    q = ResidualFSQ(dim, levels, groups) if residual else FiniteScalarQuantizer(dim, levels, num_codebooks=groups)
    q.eval()
    z = torch.randn(2, dim, t) * 2
    codes = q.encode(z)
    assert codes.shape == (2, groups, t)
    assert int(codes.min()) >= 0 and int(codes.max()) < math.prod(levels) == q.codebook_size
    assert torch.equal(q.decode(codes), q(z).z_q)
    idx = torch.randint(0, q.codebook_size, (64,))
    fsq = FiniteScalarQuantizer(len(levels), levels)
    assert torch.equal(fsq.code_to_index(fsq.index_to_code(idx)), idx)
