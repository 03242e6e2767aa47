"""Plant known bugs one at a time in a scratch copy of ``src/`` and check that the tests named for each fail.

    python tests/planted_bugs.py               # every bug (about ten minutes on 2 cores)
    python tests/planted_bugs.py --list        # names, files and tests
    python tests/planted_bugs.py NAME ...      # some of them
    python tests/planted_bugs.py --baseline    # also run each bug's tests on the unplanted copy (must pass)

Each entry: a file under ``src/voxtok``, text replacements that must each match exactly once, and the pytest node
ids that must catch it. The scratch copy is put first on ``PYTHONPATH``, so the tests import it instead of the
checkout. A replacement that no longer matches (the code moved or changed) is reported as STALE (exit status 2):
update the entry. Rerun the entries of a test area whenever its tests or code change. The table in
tests/README.md lists the same bugs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    file: str  # under src/voxtok
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]


K = "tests/kernels/"
Q = "tests/quantizers/"
C = "tests/codecs/"
V = "tests/codecs/convert/"
M = "tests/models/"
L = "tests/losses/"

BUGS = [
    # Caught before issue 13.
    Bug("ema-ignores-mask", "the VQ's EMA update uses padded frames", "quantizers/vq.py",
        (("        if valid is not None:\n            e, idx = e[valid], idx[valid]\n", ""),),
        (Q + "test_vq.py::test_padding_reaches_no_balancing_statistic",)),
    Bug("nearest-last-tie", "ties go to the last index (tile fold and float64 re-search)", "kernels/reference.py",
        (("        take = val < b1\n", "        take = val <= b1\n"),
         ("    rows = (val < b1).nonzero().squeeze(1)\n", "    rows = (val <= b1).nonzero().squeeze(1)\n"),
         ("        val, idx = torch.min(scores, dim=1)\n",
          "        val, idx = torch.min(scores.flip(1), dim=1)\n        idx = scores.shape[1] - 1 - idx\n"),
         ("            take = val < best_val\n", "            take = val <= best_val\n")),
        (K + "test_nearest_reference.py::test_ties_go_to_the_lowest_index",)),
    Bug("fsq-indices-bf16", "FSQ indices combined in bf16", "quantizers/fsq.py",
        (("        return (digits * self.basis).sum(-1)\n",
          "        return (digits.bfloat16() * self.basis.bfloat16()).sum(-1).long()\n"),),
        (Q + "test_fsq.py",)),
    Bug("decode-keeps-padding", "decode does not zero past each item's length", "codecs/codec.py",
        (("        return y * A.lengths_to_mask(lengths, s)[:, None, :].to(y.dtype)\n", "        return y\n"),),
        (C + "test_codec.py",)),
    Bug("conv-drops-stream-state", "a streaming convolution forgets its buffered samples", "models/conv.py",
        (("        state.buffer = x[..., frames * s :]\n", "        state.buffer = x[..., x.shape[-1]:]\n"),),
        (M + "test_conv.py",)),
    Bug("mel-unnormalised", "the Slaney normalisation of the mel filterbank is dropped", "audio.py",
        (('    if norm == "slaney":\n', "    if False:\n"),),
        ("tests/test_audio.py::test_mel_filterbank_matches_librosa",)),
    Bug("mimi-projection-transposed", "hf-mimi's quantizer projections transposed", "codecs/convert/hf_mimi.py",
        (('w[..., 0], name)\n', 'w[..., 0].T, name)\n'),),
        (V + "test_convert_hf_mimi.py::test_codes_and_audio_match_transformers",)),
    # Not caught before issue 13.
    Bug("hf-mimi-norms-swapped", "hf-mimi: norm1 and norm2 of every Transformer layer swapped",
        "codecs/convert/hf_mimi.py",
        (('("input_layernorm.weight", "norm1.weight"), ("input_layernorm.bias", "norm1.bias")',
          '("input_layernorm.weight", "norm2.weight"), ("input_layernorm.bias", "norm2.bias")'),
         ('("post_attention_layernorm.weight", "norm2.weight")', '("post_attention_layernorm.weight", "norm1.weight")'),
         ('("post_attention_layernorm.bias", "norm2.bias")', '("post_attention_layernorm.bias", "norm1.bias")')),
        (V + "test_convert_hf_mimi.py::test_codes_and_audio_match_transformers",)),
    Bug("moshi-mimi-norms-swapped", "moshi-mimi: norm1 and norm2 swapped", "codecs/convert/moshi_mimi.py",
        (('"norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias", "norm2.weight": "norm2.weight",\n'
          '               "norm2.bias": "norm2.bias",',
          '"norm1.weight": "norm2.weight", "norm1.bias": "norm2.bias", "norm2.weight": "norm1.weight",\n'
          '               "norm2.bias": "norm1.bias",'),),
        (V + "test_convert_moshi_mimi.py",)),
    Bug("moshi-mimi-layer-scales-swapped", "moshi-mimi: the two layer scales swapped", "codecs/convert/moshi_mimi.py",
        (('"layer_scale_1.scale": "layer_scale_1.scale"', '"layer_scale_1.scale": "layer_scale_2.scale"'),
         ('"layer_scale_2.scale": "layer_scale_2.scale"', '"layer_scale_2.scale": "layer_scale_1.scale"')),
        (V + "test_convert_moshi_mimi.py",)),
    Bug("hf-encodec-ema-swapped", "hf-encodec: embed and embed_avg swapped", "codecs/convert/hf_encodec.py",
        (('(("embed", "codebook"), ("embed_avg", "ema_sum")', '(("embed", "ema_sum"), ("embed_avg", "codebook")'),),
        (V + "test_convert_hf_encodec.py",)),
    Bug("hf-dac-decoder-snakes-swapped", "hf-dac: the decoder residual units' two Snake alphas swapped",
        "codecs/convert/hf_dac.py",
        (('                src.move(f"{s}.alpha", f"{t}.alpha")\n',
          '                if part == "decoder":\n'
          '                    t = f"{layer}.block.{2 - i}"\n'
          '                src.move(f"{s}.alpha", f"{t}.alpha")\n'),),
        (V + "test_convert_hf_dac.py",)),
    Bug("config-drops-causal", "Codec.config() leaves out `causal`", "codecs/codec.py",
        (('            "causal": self.causal,\n', ""),),
        (C + "test_codec.py::test_save_load_round_trip",)),
    Bug("rvq-dropout-never-applied", "RVQ quantizer dropout never applied", "quantizers/rvq.py",
        (("z.device) if self.training else None\n", "z.device) if False else None\n"),),
        (Q + "test_rvq.py::test_quantizer_dropout_trains_only_a_prefix_per_item",)),
    Bug("hf-encoder-wrong-layer", "HFAudioEncoder returns the hidden state before the one asked for",
        "models/hf.py",
        (("        return hidden_states[layer]\n", "        return hidden_states[layer - 1]\n"),),
        (M + "test_semantic.py",)),
    Bug("balancer-ema-forgets", "the loss balancer's EMA keeps only the latest norm", "losses/balancer.py",
        (("        self._ema_sum[name], self._ema_count[name] = s, c\n", ""),),
        (L + "test_loss_balancer.py",)),
    Bug("reflect-short-wrong-extension", "reflect padding of a short input extends it by repetition, not zeros",
        "kernels/conv.py",
        (('            v = pad(v, (0, extra), "constant")\n', '            v = pad(v, (0, extra), "replicate")\n'),),
        (M + "test_conv.py",)),
    # Weak assertions named by issue 13, each with a bug the old assertion let through.
    Bug("dead-code-metric-inclusive", "the dead-code metric counts codes at the threshold too", "quantizers/vq.py",
        (("(self.ema_count < self.dead_code_threshold)", "(self.ema_count <= self.dead_code_threshold)"),),
        (Q + "test_vq.py",)),
    Bug("vq-commitment-zero", "the commitment loss compares the latents with themselves", "quantizers/vq.py",
        (("masked_mse(e, q.detach(), valid)", "masked_mse(e, e.detach(), valid)"),),
        (Q + "test_rvq.py::test_forward_reports_per_stage_losses_and_usage",)),
    Bug("frame-rate-floored", "frame_rate by integer division", "codecs/codec.py",
        (("return self.sample_rate / self.hop_length\n", "return self.sample_rate // self.hop_length\n"),),
        (C + "test_presets.py::test_full_presets_have_their_published_bitrates",)),
    Bug("mpd-zero-padding", "the period discriminator pads with zeros, not by reflection", "models/discriminators.py",
        (('t % self.period), mode="reflect")', 't % self.period), mode="constant")'),),
        (M + "test_discriminators.py",)),
    Bug("msstft-real-imag-swapped", "EnCodec's STFT discriminator stacks imag before real", "models/discriminators.py",
        (("z = torch.stack([z.real, z.imag], dim=1).transpose", "z = torch.stack([z.imag, z.real], dim=1).transpose"),),
        (M + "test_discriminators.py",)),
    # Issue 13's own changes.
    Bug("nearest-not-certified", "the CPU search trusts its fp32 scores (no float64 re-search)", "kernels/reference.py",
        (("    return ((b2 - b1) <= margin).nonzero().squeeze(1)\n", "    return (b2 < b1).nonzero().squeeze(1)\n"),),
        (K + "test_nearest_offset.py",)),
    Bug("triton-not-translated", "the Triton kernel scores about the origin", "kernels/triton_nearest.py",
        (("            center = pivot_row(codebook, torch.float32)\n",
          "            center = torch.zeros(x.shape[1], device=x.device)\n"),),
        (K + "test_nearest_offset.py",)),
    Bug("workers-set-global-threads", "worker threads call torch.set_num_threads(1)", "kernels/reference.py",
        (("    for fn in setters:\n        fn(1)\n", "    torch.set_num_threads(1)\n"),),
        (K + "test_nearest_threads.py",)),
    Bug("chunks-drop-lengths", "chunked encoding calls the encoder without lengths", "codecs/codec.py",
        (("            return self.encoder(x[..., start:stop], (lengths - start).clamp(1, stop - start))\n",
          "            return self.encoder(x[..., start:stop]) if stop - start < x.shape[-1] else "
          "self.encoder(x, lengths)\n"),),
        (C + "test_codec.py::test_chunked_encoding_passes_each_window_its_items_lengths",
         C + "test_xcodec2_preset.py::test_chunked_batch_keeps_each_items_lengths")),
    Bug("preset-old-quantizer", "the xcodec2 preset's FSQ without X-codec2's double bound", "codecs/families.py",
        (('_named(FiniteScalarQuantizer, "xcodec2", dim=dim, levels=levels)',
          '_named(FiniteScalarQuantizer, "xcodec2", dim=dim, levels=levels, bound_input=False)'),),
        (C + "test_xcodec2_preset.py",)),
]


def _plant(bug: Bug, src: Path) -> str | None:
    """Apply the bug's edits to the copy; the first edit that does not match exactly once, or None."""
    path = src / "voxtok" / bug.file
    text = path.read_text()
    for old, new in bug.edits:
        if text.count(old) != 1:
            return f"{bug.file}: expected one match of {old.strip()[:70]!r}, found {text.count(old)}"
        text = text.replace(old, new)
    path.write_text(text)
    return None


def _run_tests(tests: tuple[str, ...], src: Path) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
    env["TRITON_INTERPRET"] = "1"
    which = subprocess.run([sys.executable, "-c", "import voxtok; print(voxtok.__file__)"], env=env, cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    if not which.startswith(str(src)):
        raise RuntimeError(f"the tests would import {which}, not the scratch copy under {src}")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not gpu", *tests]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    return out.returncode, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-200:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="bugs to plant (default: all)")
    p.add_argument("--list", action="store_true")
    p.add_argument("--baseline", action="store_true", help="also run each bug's tests unplanted")
    args = p.parse_args(argv)
    unknown = set(args.names) - {b.name for b in BUGS}
    if unknown:
        p.error(f"unknown bug(s) {sorted(unknown)}; --list shows them")
    bugs = [b for b in BUGS if not args.names or b.name in args.names]
    if args.list:
        for b in bugs:
            print(f"{b.name}: {b.what} [{b.file}] -> {', '.join(b.tests)}")
        return 0
    status = 0
    with tempfile.TemporaryDirectory(prefix="voxtok-planted-") as tmp:
        for bug in bugs:
            src = Path(tmp) / bug.name / "src"
            shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            if args.baseline:
                rc, line = _run_tests(bug.tests, src)
                if rc != 0:
                    print(f"BASELINE FAILS {bug.name}: {line}", flush=True)
                    status = max(status, 1)
                    continue
            stale = _plant(bug, src)
            if stale:
                print(f"STALE   {bug.name}: {stale}", flush=True)
                status = 2
                continue
            t0 = time.time()
            rc, line = _run_tests(bug.tests, src)
            verdict = {0: "MISSED", 1: "caught"}.get(rc, f"error (pytest exit {rc})")
            print(f"{verdict:7s} {bug.name} ({time.time() - t0:.0f} s): {line}", flush=True)
            if rc != 1:
                status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
