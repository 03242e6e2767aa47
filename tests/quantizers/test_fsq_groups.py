"""Grouped FSQ as the stft-fsq-50hz codec uses it: independent codebooks over consecutive channel groups, no
projection when the latent width equals the code dims."""

from __future__ import annotations

import math

import torch
from torch import nn

from voxtok.quantizers import FiniteScalarQuantizer

LEVELS, GROUPS = [8, 8, 8, 8, 8], 4
DIM = len(LEVELS) * GROUPS


def grouped() -> FiniteScalarQuantizer:
    return FiniteScalarQuantizer(DIM, LEVELS, num_codebooks=GROUPS).eval()


def test_sizes_and_bits() -> None:
    q = grouped()
    assert isinstance(q.project_in, nn.Identity) and isinstance(q.project_out, nn.Identity)
    assert q.codebook_size == 8**5 == 32768 and q.num_codebooks == 4
    assert 50 * q.num_codebooks * math.log2(q.codebook_size) == 3000  # bits per second at 50 Hz
    assert 50 * 4 * math.log2(math.prod([8, 5, 5, 5])) < 2000  # the 2 kbps option: 4 x 1000 codes


def test_groups_are_independent() -> None:
    # Channel c belongs to group c // len(levels): changing one group's channels changes that code row only,
    # and decoding one row changes that group's channels only.
    q = grouped()
    z = torch.randn(2, DIM, 30) * 1.5
    codes = q.encode(z)
    for g in range(GROUPS):
        z2 = z.clone()
        z2[:, g * 5 : (g + 1) * 5] = torch.randn(2, 5, 30) * 1.5
        codes2 = q.encode(z2)
        changed = (codes2 != codes).any(dim=-1).any(dim=0)
        assert changed.tolist() == [i == g for i in range(GROUPS)]
        other = codes.clone()
        other[:, g] = (other[:, g] + 1) % q.codebook_size
        moved = (q.decode(other) != q.decode(codes)).any(dim=-1).any(dim=0)
        assert moved[g * 5 : (g + 1) * 5].any() and moved.sum() == moved[g * 5 : (g + 1) * 5].sum()


def test_every_group_uses_its_codebook_and_reconstructs_within_half_a_step() -> None:
    q = grouped()
    z = torch.randn(1, DIM, 4000) * 2
    out = q.train()(z)
    assert (out.metrics["usage"] > 0.05).all() and out.metrics["usage"].shape == (GROUPS,)
    # Straight-through values are the grid points of the tanh-bounded input: at most half a grid step away.
    bounded = q.grid.bound(z.transpose(1, 2).reshape(-1, GROUPS, 5)) / q.grid.half_width
    err = (out.z_q.transpose(1, 2).reshape(-1, GROUPS, 5) - bounded).abs()
    assert err.max() <= 0.5 / 4 + 1e-6  # levels 8: grid step 1 / 4 in normalised units
