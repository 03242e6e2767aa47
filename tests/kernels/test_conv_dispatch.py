"""The convolution dispatch (``voxtok.kernels.conv``): which kernel each call takes, at its thresholds, and that every
path computes ``F.pad`` followed by ``F.conv1d`` / ``F.conv_transpose1d``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from voxtok.kernels import conv as K


def _tm(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(shape)
    return x, K.time_major(x)


def test_channel_major_input_always_takes_torchs_own_kernel() -> None:
    x = torch.randn(2, 512, 50)
    assert K.conv1d_path(x, torch.randn(1024, 512, 16), stride=8) == "conv1d"
    assert K.conv_transpose1d_path(x, torch.randn(512, 256, 16), stride=8) == "conv_transpose1d"


def test_gemm_threshold_is_weight_elements_per_output_frame() -> None:
    # 41 frames in, kernel 4, stride 1, no padding: 38 frames out.
    _, xt = _tm((1, 8, 41))
    frames = 38
    cin, k = 8, 4
    at = K.GEMM_WEIGHTS_PER_FRAME * frames // (cin * k)  # output channels putting the weight exactly at the bound
    assert at * cin * k == K.GEMM_WEIGHTS_PER_FRAME * frames
    assert K.conv1d_path(xt, torch.empty(at, cin, k)) == "gemm"
    assert K.conv1d_path(xt, torch.empty(at - 1, cin, k)) == "channels_last"
    # padding adds frames: the same weight is no longer weight-bound
    assert K.conv1d_path(xt, torch.empty(at, cin, k), padding=1) == "channels_last"
    # grouped convolutions never take the matmul
    assert K.conv1d_path(xt, torch.empty(at * 2, cin // 2, k), groups=2) == "channels_last"
    # one input channel always does (oneDNN's one-channel path is poor)
    _, mono = _tm((1, 1, 40))
    assert K.conv1d_path(mono, torch.empty(4, 1, 7)) == "gemm"


def test_transposed_gemm_threshold_and_kernel_multiple_of_stride() -> None:
    _, xt = _tm((1, 16, 10))
    at = K.GEMM_WEIGHTS_PER_FRAME * 10 // (16 * 8)
    assert K.conv_transpose1d_path(xt, torch.empty(16, at, 8), stride=4) == "gemm"
    assert K.conv_transpose1d_path(xt, torch.empty(16, at - 1, 8), stride=4) == "channels_last"
    assert K.conv_transpose1d_path(xt, torch.empty(16, at, 8), stride=3) == "channels_last"  # 8 % 3 != 0


def test_padding_paths_and_the_edge_recompute_threshold() -> None:
    n = K.EDGE_RECOMPUTE_MIN_ELEMS
    assert K.padding_path(n // 4, 4, 7, 3, 3, "reflect") == "edges"
    assert K.padding_path(n // 4 - 1, 4, 7, 3, 3, "reflect") == "copy"
    assert K.padding_path(n // 4, 4, 7, 3, 3, "replicate") == "edges"
    assert K.padding_path(10, 4, 7, 3, 3, "constant") == "inside"  # zeros are free at any size
    assert K.padding_path(10, 4, 7, 2, 4, "constant") == "copy"  # more on the right than the left
    assert K.padding_path(n, 1, 7, 6, 0, "reflect") == "edges"
    assert K.padding_path(20, n, 7, 6, 0, "reflect") == "copy"  # edges overlap: too short to split


@pytest.mark.parametrize("layout", ["channel", "time"])
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize(("left", "right"), [(6, 0), (3, 3), (3, 4), (0, 2), (4, 2)])
@pytest.mark.parametrize("gemm", [False, True])
@pytest.mark.parametrize("edges", [False, True])
def test_every_path_equals_pad_then_convolve(layout, mode, left, right, gemm, edges, monkeypatch) -> None:
    monkeypatch.setattr(K, "GEMM_WEIGHTS_PER_FRAME", 0 if gemm else 1 << 62)
    monkeypatch.setattr(K, "EDGE_RECOMPUTE_MIN_ELEMS", 0 if edges else 1 << 62)
    w, b = torch.randn(5, 3, 4), torch.randn(5)
    for length, stride, dilation in ((50, 1, 1), (51, 2, 1), (64, 3, 2)):
        x = torch.randn(2, 3, length)
        inp = K.time_major(x) if layout == "time" else x
        want = F.conv1d(F.pad(x, (left, right), mode=mode), w, b, stride, dilation=dilation)
        got = K.padded_conv1d(inp, w, b, stride, dilation, 1, left, right, mode)
        assert K.is_time_major(got) == (layout == "time") or got.shape[-1] <= 1
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["channel", "time"])
@pytest.mark.parametrize("gemm", [False, True])
def test_transposed_paths_equal_torch(layout, gemm, monkeypatch) -> None:
    monkeypatch.setattr(K, "GEMM_WEIGHTS_PER_FRAME", 0 if gemm else 1 << 62)
    w, b = torch.randn(6, 4, 8), torch.randn(4)
    x = torch.randn(2, 6, 9)
    inp = K.time_major(x) if layout == "time" else x
    torch.testing.assert_close(K.conv_transpose1d(inp, w, b, 4), F.conv_transpose1d(x, w, b, 4), rtol=1e-5,
                               atol=1e-5)  # fmt: skip


def test_reflect_pad_of_a_short_input_appends_zeros_first() -> None:
    x = torch.tensor([[[1.0, 2.0]]])
    # EnCodec's rule: [1, 2] -> [1, 2, 0] (long enough to reflect 2), reflect, drop the added zero.
    assert K.pad1d(x, 2, 2, "reflect").tolist() == [[[0.0, 2.0, 1.0, 2.0, 0.0, 2.0]]]
    assert torch.equal(K.pad1d(K.time_major(x), 2, 2, "reflect"), K.pad1d(x, 2, 2, "reflect"))
