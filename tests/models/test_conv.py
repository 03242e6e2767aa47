"""Convolution wrappers: padding arithmetic, causality, streaming == offline, weight-norm folding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voxtok.kernels import conv as conv_kernels
from voxtok.models.conv import LSTM, Conv1d, ConvTranspose1d, Snake1d, is_time_major, remove_weight_norm, time_major


def _stream(module: nn.Module, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Feed ``x`` in chunks of the given sizes (cycled) inside ``module.streaming``; concatenate the outputs."""
    outs, pos, i = [], 0, 0
    with module.streaming(x.shape[0]):
        while pos < x.shape[-1]:
            n = sizes[i % len(sizes)]
            outs.append(module(x[..., pos : pos + n]))
            pos, i = pos + n, i + 1
    return torch.cat(outs, dim=-1)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize(("kernel", "stride", "dilation"), [(7, 1, 1), (3, 1, 4), (10, 5, 1), (4, 2, 1), (1, 1, 1)])
def test_conv1d_output_length_is_ceil_of_length_over_stride(causal, pad_mode, kernel, stride, dilation):
    conv = Conv1d(3, 5, kernel, stride=stride, dilation=dilation, causal=causal, pad_mode=pad_mode)
    for length in [1, 2, 3, 7, 10, 11, 37]:
        y = conv(torch.randn(2, 3, length))
        assert y.shape == (2, 5, -(-length // stride))
        assert conv.output_length(length) == y.shape[-1]


def test_same_padding_is_centred():
    """A non-causal stride-1 conv with a delta kernel is the identity: the padding is split evenly."""
    conv = Conv1d(1, 1, 5, bias=False)
    with torch.no_grad():
        conv.conv.weight.zero_()
        conv.conv.weight[0, 0, 2] = 1.0
    x = torch.randn(1, 1, 20)
    torch.testing.assert_close(conv(x), x)


@pytest.mark.parametrize(("kernel", "stride"), [(7, 1), (8, 4), (10, 5), (3, 1)])
def test_causal_conv_never_sees_the_future(kernel, stride):
    conv = Conv1d(2, 3, kernel, stride=stride, causal=True)
    x = torch.randn(1, 2, 60)
    t = 31
    x2 = x.clone()
    x2[..., t:] = torch.randn_like(x2[..., t:])
    y, y2 = conv(x), conv(x2)
    # Frame j reads samples < (j + 1) * stride.
    safe = t // stride
    torch.testing.assert_close(y[..., :safe], y2[..., :safe], rtol=0, atol=0)
    assert not torch.allclose(y[..., safe:], y2[..., safe:])


@pytest.mark.parametrize("pad_mode", ["constant", "replicate"])
@pytest.mark.parametrize(("kernel", "stride", "dilation"), [(7, 1, 1), (3, 1, 3), (8, 4, 1), (10, 5, 1)])
@pytest.mark.parametrize("sizes", [[1], [3], [5, 1, 7], [13], [2, 0, 9]])
def test_conv1d_streaming_matches_offline(pad_mode, kernel, stride, dilation, sizes):
    conv = Conv1d(2, 3, kernel, stride=stride, dilation=dilation, causal=True, pad_mode=pad_mode, norm="weight_norm")
    length = 60  # a multiple of every stride: offline adds no right padding
    x = torch.randn(2, 2, length)
    with torch.no_grad():
        torch.testing.assert_close(_stream(conv, x, sizes), conv(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("kernel", "stride"), [(8, 4), (10, 5), (4, 2), (3, 1)])
@pytest.mark.parametrize("sizes", [[1], [2, 3], [7]])
def test_conv_transpose_streaming_matches_offline(kernel, stride, sizes):
    conv = ConvTranspose1d(3, 2, kernel, stride=stride, causal=True, norm="weight_norm")
    x = torch.randn(2, 3, 15)
    with torch.no_grad():
        y = conv(x)
        assert y.shape == (2, 2, 15 * stride)
        torch.testing.assert_close(_stream(conv, x, sizes), y, rtol=0, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("kernel", "stride"), [(8, 4), (10, 5), (2, 1)])
def test_conv_transpose_output_length_is_frames_times_stride(causal, kernel, stride):
    conv = ConvTranspose1d(3, 2, kernel, stride=stride, causal=causal)
    for frames in [1, 2, 9]:
        assert conv(torch.randn(1, 3, frames)).shape[-1] == frames * stride == conv.output_length(frames)


def test_lstm_streaming_carries_state():
    lstm = LSTM(4, num_layers=2)
    x = torch.randn(2, 4, 11)
    with torch.no_grad():
        torch.testing.assert_close(_stream(lstm, x, [3, 1, 4]), lstm(x), rtol=0, atol=1e-5)


def test_bidirectional_lstm_doubles_width_and_refuses_to_stream():
    lstm = LSTM(4, num_layers=1, bidirectional=True)
    assert lstm(torch.randn(2, 4, 5)).shape == (2, 8, 5)
    with pytest.raises(ValueError, match="bidirectional"), lstm.streaming(1):
        pass


def test_streaming_refuses_non_causal_and_reflect():
    with pytest.raises(ValueError, match="non-causal"), Conv1d(1, 1, 3).streaming(1):
        pass
    with pytest.raises(ValueError, match="reflect"), Conv1d(1, 1, 3, causal=True, pad_mode="reflect").streaming(1):
        pass


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="pad_mode"):
        Conv1d(1, 1, 3, pad_mode="circular")
    with pytest.raises(ValueError, match="norm"):
        Conv1d(1, 1, 3, norm="spectral")
    with pytest.raises(ValueError, match="kernel_size"):
        ConvTranspose1d(1, 1, 2, stride=4)


def test_remove_weight_norm_keeps_outputs_and_drops_parametrisation():
    conv = Conv1d(3, 4, 5, causal=True, norm="weight_norm")
    tconv = ConvTranspose1d(4, 2, 6, stride=3, norm="weight_norm")
    net = nn.Sequential(conv, tconv)
    with torch.no_grad():
        conv.conv.parametrizations.weight.original0.mul_(3.0)  # g != ||v||: folding must keep the scale
        x = torch.randn(2, 3, 17)
        before = net(x)
        remove_weight_norm(net)
        after = net(x)
    assert not any("parametrizations" in k for k in net.state_dict())
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)


def test_snake_is_per_channel_and_matches_formula():
    snake = Snake1d(3)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1))
    x = torch.randn(2, 3, 8)
    alpha = snake.alpha
    torch.testing.assert_close(snake(x), x + torch.sin(alpha * x) ** 2 / alpha)
    assert snake.alpha.shape == (1, 3, 1)


def test_snake_inference_paths_match_autograd_path():
    from voxtok.models.conv import apply_activation

    snake = Snake1d(3)
    with torch.no_grad():
        snake.alpha.uniform_(0.3, 3.0)
    x = torch.randn(2, 3, 9)
    expected = snake(x).detach()
    with torch.inference_mode():
        torch.testing.assert_close(snake(x), expected)
        y = x.clone()
        out = apply_activation(snake, y, inplace=True)
        assert out.data_ptr() == y.data_ptr()
        torch.testing.assert_close(out, expected)


def test_remove_weight_norm_under_inference_mode_keeps_weights_trainable():
    conv = Conv1d(2, 2, 3, norm="weight_norm")
    with torch.inference_mode():
        remove_weight_norm(conv)
    assert not conv.conv.weight.is_inference() and conv.conv.weight.requires_grad
    conv(torch.randn(1, 2, 8)).sum().backward()
    assert conv.conv.weight.grad is not None


# -- memory layout: time-major tensors take other kernels but must give the same numbers --------------------------


def _channel_major_and_time_major(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(*shape)
    xt = time_major(x)
    assert is_time_major(xt) and torch.equal(xt, x)
    return x, xt


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "dilation", "groups"),
    [(1, 6, 7, 1, 1, 1), (1, 4, 8, 4, 1, 1), (1, 3, 3, 1, 2, 1), (6, 4, 3, 1, 3, 1), (4, 8, 10, 5, 1, 1),
     (4, 1, 7, 1, 1, 1), (6, 6, 4, 2, 1, 3), (5, 7, 1, 1, 1, 1)],
)  # fmt: skip
@pytest.mark.parametrize("batch", [1, 3])
def test_conv1d_time_major_equals_channel_major(causal, pad_mode, c_in, c_out, kernel, stride, dilation, groups, batch):
    conv = Conv1d(c_in, c_out, kernel, stride, dilation, groups, causal=causal, pad_mode=pad_mode).eval()
    for length in (1, 2, 9, 23):
        x, xt = _channel_major_and_time_major((batch, c_in, length))
        with torch.inference_mode():
            want, got = conv(x), conv(xt)
        assert got.shape == want.shape == (batch, c_out, -(-length // stride))
        assert is_time_major(got), "a time-major input must give a time-major output"
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "groups"), [(6, 4, 8, 4, 1), (4, 4, 4, 2, 4), (3, 1, 3, 1, 1)]
)
@pytest.mark.parametrize("batch", [1, 2])
def test_conv_transpose_time_major_equals_channel_major(causal, c_in, c_out, kernel, stride, groups, batch):
    conv = ConvTranspose1d(c_in, c_out, kernel, stride, groups, causal=causal).eval()
    x, xt = _channel_major_and_time_major((batch, c_in, 11))
    with torch.inference_mode():
        want, got = conv(x), conv(xt)
    assert is_time_major(got)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_time_major_conv_backward_matches_channel_major():
    conv = Conv1d(4, 5, 7, causal=True, pad_mode="replicate")
    x = torch.randn(2, 4, 30)
    grads = []
    for inp in (x, time_major(x)):
        conv.zero_grad()
        inp = inp.detach().requires_grad_(True)
        conv(inp).square().sum().backward()
        grads.append((inp.grad.clone(), conv.conv.weight.grad.clone()))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 2])
def test_lstm_keeps_the_layout_it_is_given(batch):
    lstm = LSTM(6, 1).eval()
    x, xt = _channel_major_and_time_major((batch, 6, 9))
    with torch.inference_mode():
        want, got = lstm(x), lstm(xt)
    assert is_time_major(got)
    torch.testing.assert_close(got, want)


def test_time_major_of_one_channel_is_a_view_and_rejects_other_ranks():
    x = torch.randn(2, 1, 50)
    xt = time_major(x)
    assert xt.data_ptr() == x.data_ptr() and is_time_major(xt) and not is_time_major(x)
    with pytest.raises(ValueError, match=r"\[B, C, T\]"):
        time_major(torch.randn(3, 4))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect", "replicate"])
@pytest.mark.parametrize(
    ("c_in", "kernel", "stride", "dilation"), [(3, 7, 1, 1), (3, 3, 1, 4), (2, 10, 5, 1), (1, 7, 1, 1), (2, 4, 2, 1)]
)
@pytest.mark.parametrize("time_major_input", [False, True])
@pytest.mark.parametrize("recompute_edges", [False, True])
def test_conv1d_equals_explicit_padding_then_convolution(causal, pad_mode, c_in, kernel, stride, dilation,
                                                          time_major_input, recompute_edges, monkeypatch):  # fmt: skip
    # Long inputs take the path that recomputes only the edge frames; short ones pad a copy. Both must equal
    # F.pad followed by an unpadded convolution, the definition of the padding rules.
    monkeypatch.setattr(conv_kernels, "EDGE_RECOMPUTE_MIN_ELEMS", 0 if recompute_edges else 1 << 62)
    conv = Conv1d(c_in, 4, kernel, stride, dilation, causal=causal, pad_mode=pad_mode).eval()
    for length in (3, 17, 64, 101):
        x = torch.randn(2, c_in, length)
        extra = conv._extra_padding(length)
        left, right = conv.padding_left, conv.padding_right + extra
        if pad_mode == "reflect" and length <= max(left, right):
            continue  # the EnCodec zero-extension rule: test_reflect_padding_of_short_inputs_extends_with_zeros
        want = nn.functional.conv1d(
            nn.functional.pad(x, (left, right), mode=pad_mode), conv.conv.weight, conv.conv.bias, stride,
            dilation=dilation,
        )  # fmt: skip
        got = conv(time_major(x) if time_major_input else x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _encodec_reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """EnCodec / moshi's rule, written out: an input no longer than the pad is first extended with zeros on the
    right (one more than the shortfall), reflected, and the extension cut off again."""
    n = x.shape[-1]
    extra = max(left, right) - n + 1 if n <= max(left, right) else 0
    padded = nn.functional.pad(torch.cat([x, x.new_zeros(*x.shape[:-1], extra)], -1), (left, right), mode="reflect")
    return padded[..., : padded.shape[-1] - extra]


def _padded_through(conv_kernel: int, x: torch.Tensor, **kw) -> torch.Tensor:
    """The padded signal a ``Conv1d`` sees, read back through one-hot taps: output channel j at frame t is
    padded[t + j], so a stride-1 convolution of kernel K over T frames exposes all T + K - 1 padded samples."""
    conv = Conv1d(1, conv_kernel, conv_kernel, bias=False, **kw).eval()
    with torch.no_grad():
        conv.conv.weight.copy_(torch.eye(conv_kernel)[:, None, :])
        out = conv(x)[0]  # [K, T]
    return torch.cat([out[0], out[1:, -1]])


def test_reflect_padding_of_short_inputs_extends_with_zeros():
    # By hand: [1, 2, 3] padded by 4 on both sides extends to [1, 2, 3, 0, 0], reflects to
    # [0, 0, 3, 2 | 1, 2, 3, 0, 0 | 0, 3, 2, 1] and drops the two added zeros at the end.
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    want = torch.tensor([0.0, 0.0, 3.0, 2.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 3.0])
    torch.testing.assert_close(_encodec_reflect_pad(x, 4, 4)[0, 0], want)
    torch.testing.assert_close(_padded_through(9, x, pad_mode="reflect"), want)
    torch.testing.assert_close(_padded_through(9, time_major(x), pad_mode="reflect"), want)
    try:  # moshi's own pad1d, where installed: the reference implementation of the rule
        from moshi.modules.conv import pad1d as moshi_pad1d
    except ImportError:
        moshi_pad1d = None
    # Inputs no longer than the pad, centred and causal, both layouts, against the rule written out.
    for length, kernel, causal in ((1, 7, False), (2, 13, True), (4, 9, False), (5, 11, False), (3, 8, True)):
        x = torch.randn(1, 1, length)
        conv = Conv1d(1, 1, kernel, causal=causal, pad_mode="reflect")
        left, right = conv.padding_left, conv.padding_right + conv._extra_padding(length)
        want = _encodec_reflect_pad(x, left, right)[0, 0]
        if moshi_pad1d is not None:
            torch.testing.assert_close(moshi_pad1d(x, (left, right), mode="reflect")[0, 0], want)
        for inp in (x, time_major(x)):
            torch.testing.assert_close(_padded_through(kernel, inp, causal=causal, pad_mode="reflect"), want)


def test_edge_recompute_keeps_gradients(monkeypatch):
    monkeypatch.setattr(conv_kernels, "EDGE_RECOMPUTE_MIN_ELEMS", 0)
    conv = Conv1d(2, 3, 7, causal=True, pad_mode="reflect")
    x = torch.randn(1, 2, 200, requires_grad=True)
    conv(x).sum().backward()
    ref = x.detach().clone().requires_grad_(True)
    nn.functional.conv1d(
        nn.functional.pad(ref, (6, 0), mode="reflect"), conv.conv.weight, conv.conv.bias
    ).sum().backward()
    torch.testing.assert_close(x.grad, ref.grad)


@pytest.mark.parametrize(
    ("c_in", "kernel", "stride", "dilation", "pad_mode"),
    [(12, 7, 1, 1, "constant"), (12, 16, 8, 1, "constant"), (8, 3, 1, 3, "reflect"), (1, 5, 2, 3, "replicate")],
)
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("matmul", [False, True])
def test_time_major_matmul_and_onednn_paths_agree(c_in, kernel, stride, dilation, pad_mode, batch, matmul, monkeypatch):
    monkeypatch.setattr(conv_kernels, "GEMM_WEIGHTS_PER_FRAME", 0 if matmul else 1 << 62)
    conv = Conv1d(c_in, 6, kernel, stride, dilation, pad_mode=pad_mode).eval()
    x, xt = _channel_major_and_time_major((batch, c_in, 40))
    with torch.inference_mode():
        want, got = conv(x), conv(xt)
    assert is_time_major(got)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("kernel", "stride"), [(16, 8), (12, 4), (5, 5)])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("matmul", [False, True])
def test_transposed_conv_paths_agree_offline_streaming_and_in_backward(causal, kernel, stride, batch, matmul,
                                                                       monkeypatch):  # fmt: skip
    monkeypatch.setattr(conv_kernels, "GEMM_WEIGHTS_PER_FRAME", 0 if matmul else 1 << 62)
    conv = ConvTranspose1d(16, 3, kernel, stride, causal=causal)
    x, xt = _channel_major_and_time_major((batch, 16, 9))
    with torch.inference_mode():
        want, got = conv(x), conv(xt)
    assert is_time_major(got)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    if causal:
        with torch.inference_mode():
            torch.testing.assert_close(_stream(conv, xt, [2, 3]), want, rtol=1e-4, atol=1e-4)
    grads = []
    for inp in (x, xt):
        conv.zero_grad()
        inp = inp.detach().requires_grad_(True)
        conv(inp).square().sum().backward()
        grads.append((inp.grad.clone(), conv.conv.weight.grad.clone(), conv.conv.bias.grad.clone()))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
