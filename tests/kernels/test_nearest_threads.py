from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("mode", ["inference", "no_grad", "grad"])
def test_threaded_search_under_every_autograd_mode(mode: str) -> None:
    # The test suite runs single-threaded; the CPU path's worker threads only start with 2+ intra-op threads and
    # enough rows. Grad and inference modes are thread-local, so the workers must take the caller's.
    import contextlib

    from voxtok.kernels import nearest

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(0)
        x, c = torch.randn(40000, 8, generator=g), torch.randn(512, 8, generator=g)
        expected = torch.cdist(x.double(), c.double()).argmin(1)
        ctx = {"inference": torch.inference_mode(), "no_grad": torch.no_grad(), "grad": contextlib.nullcontext()}
        with ctx[mode]:
            idx, dist = nearest(x.requires_grad_(mode == "grad"), c)
        assert torch.equal(idx, expected) and not dist.requires_grad
    finally:
        torch.set_num_threads(threads)
