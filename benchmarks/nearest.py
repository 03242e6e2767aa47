"""Nearest-code search: voxtok.kernels.nearest against torch cdist+argmin and matmul+argmin, and code lookup.

For every (K, D) cell: median time, achieved GFLOP/s (2 N K D / time) and peak extra memory of each method; the
baselines run only where their N x K matrices fit (``--max-baseline-gb``). On CPU each cell runs in a fresh
subprocess (all of its methods in that one process, voxtok first) and peak extra memory is the high-water mark of
resident anonymous memory above its pre-call value, sampled every millisecond; on CUDA it is
``torch.cuda.max_memory_allocated``. Cells whose
first run takes longer than ``--budget-s`` / 2 are timed once.

The "offset" column counts wrong indices on latents far from the origin (codebook ``randn(K, D) + m``, queries
near its rows, ``--offset-rows`` of them, fp32) against the float64 argmin: voxtok / matmul+argmin / cdist+argmin.
``--offset-table`` prints that comparison alone over D in {8, 128} and m in {30, 100, 300, 1000} (N=20000, K=2048)
with each method's worst relative excess distance.

    python benchmarks/nearest.py            # the issue's grid on this device (CPU: N=1e5; CUDA: N=1e6, fp32+bf16)
    python benchmarks/nearest.py --quick    # a small grid, for `make bench`
    python benchmarks/nearest.py --offset-table
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

import psutil
import torch

from voxtok.kernels import lookup, nearest

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _anon_rss() -> int:
    """Resident anonymous memory (Linux ``RssAnon``): what a search allocates. Plain RSS also counts file-backed
    pages of libtorch / MKL, which the kernel drops and faults back in at will (seen for one search: +283 MiB of RSS,
    +16 MiB of RssAnon); falls back to RSS elsewhere."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))
    except (OSError, StopIteration):
        return psutil.Process().memory_info().rss


class _PeakRSS:
    """Anonymous-RSS high-water mark above its value at entry, sampled every millisecond in a background thread."""

    def __enter__(self) -> _PeakRSS:
        self.base = self.peak = _anon_rss()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        while not self.done.wait(0.001):
            self.peak = max(self.peak, _anon_rss())

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, _anon_rss())
        self.extra = self.peak - self.base


def _methods(x: torch.Tensor, c: torch.Tensor) -> dict:
    def matmul_argmin() -> torch.Tensor:
        return ((c * c).sum(1) - 2 * x @ c.T).argmin(1)

    def cdist_argmin() -> torch.Tensor:
        return torch.cdist(x, c).argmin(1)

    return {"voxtok": lambda: nearest(x, c)[0], "matmul+argmin": matmul_argmin, "cdist+argmin": cdist_argmin}


def _time(fn, device: str, budget_s: float) -> tuple[float, int, int]:
    """(median seconds, runs timed, peak extra bytes of the first run)."""
    if device == "cuda":
        fn()  # compile the Triton kernel (and warm cuBLAS) outside the timed runs
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        fn()
        _sync(device)
        first = time.perf_counter() - t0
        extra = torch.cuda.max_memory_allocated() - base
    else:
        with _PeakRSS() as mem:
            t0 = time.perf_counter()
            fn()
            first = time.perf_counter() - t0
        extra = mem.extra
    repeats = 0 if first > budget_s / 2 else int(min(5, max(2, budget_s // max(first, 1e-6))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times or [first]), max(1, repeats), extra


def offset_data(n: int, k: int, d: int, offset: float, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebook ``randn(K, D) + offset``, queries near its rows (noise 0.5), fp32."""
    g = torch.Generator().manual_seed(1)
    c = torch.randn(k, d, generator=g) + offset
    x = c[torch.randint(0, k, (n,), generator=g)] + 0.5 * torch.randn(n, d, generator=g)
    return x.to(device), c.to(device)


def exact_best(x: torch.Tensor, c: torch.Tensor, rows: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (best distance, best index) per row, from translated data, ``rows`` queries at a time."""
    mu = c.double().mean(0)
    c64 = c.double() - mu
    csq = (c64 * c64).sum(1)
    vals, idxs = [], []
    for i in range(0, x.shape[0], rows):
        x64 = x[i : i + rows].double() - mu
        d = (csq - 2 * x64 @ c64.T + (x64 * x64).sum(1, keepdim=True)).clamp_min(0)
        v, j = d.min(dim=1)
        vals.append(v)
        idxs.append(j)
    return torch.cat(vals), torch.cat(idxs)


def offset_errors(n: int, k: int, d: int, offset: float, device: str, max_gb: float) -> dict:
    """Per method: (wrong indices, worst relative excess distance), or None where its N x K matrix does not fit."""
    x, c = offset_data(n, k, d, offset, device)
    best, best_idx = exact_best(x, c)
    mu = c.double().mean(0)
    out: dict = {}
    for name, fn in _methods(x, c).items():
        if name != "voxtok" and 2 * n * k * 4 > max_gb * 1e9:
            out[name] = None
            continue
        idx = fn()
        bad = idx != best_idx
        chosen = ((x.double() - mu) - (c.double()[idx] - mu)).square().sum(1)
        excess = ((chosen - best)[bad] / best[bad].clamp_min(1e-30)).max().item() if bad.any() else 0.0
        out[name] = (int(bad.sum()), excess)
    return out


def offset_table(args: argparse.Namespace, device: str) -> None:
    n, k = 20000, 2048
    print(f"\n### offset latents, {device}, float32, N={n}, K={k}: codebook randn(K, D) + m, queries near its rows")
    print("(wrong indices against the float64 argmin; worst relative excess distance)\n")
    print("| D | m | voxtok | matmul+argmin | cdist+argmin |")
    print("|---|---|---|---|---|", flush=True)
    for d in (8, 128):
        for m in ((30, 100, 300, 1000) if d == 8 else (1000,)):
            r = offset_errors(n, k, d, m, device, args.max_baseline_gb)
            cells = " | ".join("-" if r[name] is None else f"{r[name][0]} ({r[name][1]:.1e})" for name in r)
            print(f"| {d} | {m} | {cells} |", flush=True)


def run_cell(
    n: int,
    k: int,
    d: int,
    device: str,
    dtype: torch.dtype,
    max_gb: float,
    budget_s: float,
    offset_rows: int = 0,
    offset: float = 1000.0,
) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g).to(device, dtype)
    c = torch.randn(k, d, generator=g).to(device, dtype)
    rows = {}
    for name, fn in _methods(x, c).items():
        if name != "voxtok" and 2 * n * k * 4 > max_gb * 1e9:  # the N x K matrix and one temporary
            rows[name] = None
            continue
        try:
            rows[name] = _time(fn, device, budget_s)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:  # baseline out of memory on the device
            rows[name] = str(err).splitlines()[0][:40]
    if offset_rows:
        rows["offset"] = offset_errors(offset_rows, k, d, offset, device, max_gb)
    return rows


def _fmt(n: int, k: int, d: int, r) -> str:
    if r is None:
        return "does not fit"
    if isinstance(r, str):
        return f"failed: {r}"
    t, reps, extra = r
    return f"{t:.3f} s ({2 * n * k * d / t / 1e9:.0f} GFLOP/s, {extra / 2**20:.0f} MiB, x{reps})"


def nearest_table(args: argparse.Namespace, device: str) -> None:
    for dtype_name in args.dtypes:
        print(f"\n### nearest, {device}, {dtype_name}, N={args.n}, torch threads={torch.get_num_threads()}\n")
        offset_rows = args.offset_rows if dtype_name == "float32" else 0
        offset_head = f" offset: wrong of {offset_rows} at m={args.offset:g} |" if offset_rows else ""
        print(f"| K | D | voxtok | matmul+argmin | cdist+argmin | speed-up vs matmul |{offset_head}")
        print("|---|---|---|---|---|---|" + ("---|" if offset_rows else ""), flush=True)
        for k in args.k:
            for d in args.d:
                if device == "cpu":  # fresh process per cell: clean RSS baseline, one cell's allocations only
                    cmd = [
                        sys.executable,
                        __file__,
                        "--cell",
                        str(k),
                        str(d),
                        "--n",
                        str(args.n),
                        "--dtypes",
                        dtype_name,
                        "--max-baseline-gb",
                        str(args.max_baseline_gb),
                        "--budget-s",
                        str(args.budget_s),
                        "--threads",
                        str(args.threads),
                        "--offset-rows",
                        str(offset_rows),
                        "--offset",
                        str(args.offset),
                    ]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                    rows = json.loads(out.strip().splitlines()[-1])
                else:
                    rows = run_cell(args.n, k, d, device, DTYPES[dtype_name], args.max_baseline_gb, args.budget_s,
                                    offset_rows, args.offset)  # fmt: skip
                mm, vox = rows["matmul+argmin"], rows["voxtok"]
                speedup = f"{mm[0] / vox[0]:.1f}x" if isinstance(mm, list | tuple) else "-"
                cells = " | ".join(_fmt(args.n, k, d, rows[m]) for m in ("voxtok", "matmul+argmin", "cdist+argmin"))
                offset_cell = ""
                if offset_rows:
                    wrong = [("-" if r is None else str(r[0])) for r in rows["offset"].values()]
                    offset_cell = " " + " / ".join(wrong) + " |"
                print(f"| {k} | {d} | {cells} | {speedup} |{offset_cell}", flush=True)


def _rate(fn, out_bytes: int, device: str) -> float:
    """GB/s of ``out_bytes`` written by ``fn``: median of 5 runs after a warm-up."""
    fn()
    _sync(device)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return out_bytes / statistics.median(ts) / 1e9


def _lookup_row(n: int, k: int, d: int, device: str) -> str:
    c = torch.randn(k, d, device=device, requires_grad=True)
    idx = torch.randint(0, k, (n,), device=device)
    src, grad = torch.randn(n, d, device=device), torch.randn(n, d, device=device)
    dst = torch.empty_like(src)

    def backward() -> None:
        c.grad = None
        lookup(idx, c).backward(grad)

    with torch.no_grad():
        forward = (lambda: lookup(idx, c), lambda: c[idx], lambda: dst.copy_(src))
        rates = [_rate(fn, n * d * 4, device) for fn in forward]
    rates.append(_rate(backward, n * d * 4, device))
    return f"| {d} | {n} | " + " | ".join(f"{r:.1f}" for r in rates) + " |"


def lookup_table(n_max: int, k: int, dims: list[int], device: str) -> None:
    """Gather throughput of ``lookup`` (F.embedding) and ``codebook[indices]`` against a plain copy of the
    same output bytes: how much a custom gather kernel could gain at most."""
    print(f"\n### lookup, {device}, float32, K={k} (GB/s of output written; median of 5)\n")
    print("| D | N | lookup | codebook[indices] | copy (same bytes) | lookup backward (scatter-add) |")
    print("|---|---|---|---|---|---|", flush=True)
    for d in dims:
        print(_lookup_row(min(n_max, (256 << 20) // (4 * d)), k, d, device), flush=True)  # <= 256 MiB per tensor


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=None, help="queries (default 1e5 on CPU, 1e6 on CUDA)")
    p.add_argument("--k", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--d", type=int, nargs="+", default=[8, 64, 256, 1024])
    p.add_argument("--dtypes", nargs="+", default=None, choices=list(DTYPES), help="default: CPU fp32, CUDA fp32 bf16")
    p.add_argument("--max-baseline-gb", type=float, default=8.0, help="skip baselines whose N x K matrices exceed it")
    p.add_argument("--budget-s", type=float, default=20.0, help="rough seconds of repeats per method and cell")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    p.add_argument("--quick", action="store_true", help="small grid: N=2e4, K 1024 4096, D 8 64")
    p.add_argument("--no-lookup", action="store_true")
    p.add_argument("--offset-rows", type=int, default=2000, help="queries of the offset check per cell (0: none)")
    p.add_argument("--offset", type=float, default=1000.0, help="the offset m of the offset check")
    p.add_argument("--offset-table", action="store_true", help="print only the offset comparison (the issue's table)")
    p.add_argument("--cell", type=int, nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = args.device
    args.dtypes = args.dtypes or (["float32", "bfloat16"] if device == "cuda" else ["float32"])
    args.n = args.n or (1_000_000 if device == "cuda" else 100_000)
    if args.quick:
        args.n, args.k, args.d = 20_000, [1024, 4096], [8, 64]
    if args.cell is not None:
        k, d = args.cell
        cell = run_cell(args.n, k, d, "cpu", DTYPES[args.dtypes[0]], args.max_baseline_gb, args.budget_s,
                        args.offset_rows, args.offset)  # fmt: skip
        print(json.dumps(cell))
        return
    if args.offset_table:
        offset_table(args, device)
        return
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {psutil.cpu_count()} cores"
    print(f"# nearest-code search on {name} (load average {psutil.getloadavg()[0]:.1f} at start)")
    nearest_table(args, device)
    if not args.no_lookup:
        lookup_table(args.n * (10 if device == "cpu" else 1), 4096, args.d, device)


if __name__ == "__main__":
    main()
