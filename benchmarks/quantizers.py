"""Quantizer benchmarks: rate-distortion on i.i.d. Gaussian data, and speed / peak memory against
vector-quantize-pytorch on the CPU.

    python benchmarks/quantizers.py                 # both parts, full grid
    python benchmarks/quantizers.py --quick         # small grid (what `make bench` should run)
    python benchmarks/quantizers.py --part rd       # rate-distortion only
    python benchmarks/quantizers.py --part speed    # speed / memory only

Part 1 (rate-distortion): train 2^20 / test 2^18 vectors of N(0, I_d). For each (d, K) the online quantizer
(voxtok defaults, streamed once or more in training mode) is compared with offline k-means (k-means++ seeding,
Lloyd to convergence on the whole training set: the oracle at that (d, K)); per-dimension MSE on the test set,
gap to the Shannon bound D(R) = 2^(-2R) with R = log2(K) / d bits per dimension, and codebook utilisation on
the test set. FSQ [8, 5, 5, 5] (with a learned affine map in and out) and 2-stage RVQ run at matching rates.

Part 2 (speed and memory): N frames of dim D, K codes, EMA codebook, k-means already done (both libraries get
the same codebook written into them). Timings interleave voxtok and the baseline in one process and report
the median of the repeats. Peak memory is measured in a fresh subprocess per (library, case): the rise of the
process's resident-set high-water mark (``ru_maxrss``) over its resident size just before the step, which sees
every CPU allocation of both libraries alike.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from voxtok.kernels import nearest  # noqa: E402
from voxtok.quantizers import FiniteScalarQuantizer, ResidualVectorQuantizer, VectorQuantizer  # noqa: E402

warnings.filterwarnings("ignore")

# ----------------------------------------------------------------------------------------------------------
# Part 1: rate-distortion


def _assign(x: torch.Tensor, codebook: torch.Tensor, chunk: int = 1 << 17) -> torch.Tensor:
    return torch.cat([nearest(x[i : i + chunk], codebook)[0] for i in range(0, x.shape[0], chunk)])


def kmeans_oracle(x: torch.Tensor, k: int, max_iters: int, seed_sample: int = 1 << 16) -> torch.Tensor:
    """Offline k-means: k-means++ seeding on a subsample, then Lloyd on all of ``x`` until the MSE stalls."""
    g = torch.Generator().manual_seed(1)
    sub = x[torch.randperm(x.shape[0], generator=g)[:seed_sample]]
    centers = [sub[torch.randint(sub.shape[0], (1,), generator=g)].squeeze(0)]
    d2 = (sub - centers[0]).pow(2).sum(-1)
    for _ in range(1, k):
        c = sub[torch.multinomial(d2, 1, generator=g)].squeeze(0)
        centers.append(c)
        d2 = torch.minimum(d2, (sub - c).pow(2).sum(-1))
    cb = torch.stack(centers)
    prev = math.inf
    for _ in range(max_iters):
        idx = _assign(x, cb)
        counts = torch.bincount(idx, minlength=k).float()
        sums = torch.zeros_like(cb).index_add_(0, idx, x)
        cb = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], cb)
        mse = (x - cb[idx]).pow(2).mean().item()
        if prev - mse < 1e-5 * mse:  # Lloyd has stalled
            break
        prev = mse
    return cb


def _frames(x: torch.Tensor) -> torch.Tensor:
    return x.t().unsqueeze(0)  # [N, d] -> [1, d, N]


def train_online(q: nn.Module, train: torch.Tensor, batch: int, epochs: int) -> None:
    q.train()
    with torch.no_grad():
        for _ in range(epochs):
            for i in range(0, train.shape[0], batch):
                q(_frames(train[i : i + batch]))


def evaluate(q: nn.Module, test: torch.Tensor) -> tuple[float, torch.Tensor]:
    q.eval()
    with torch.no_grad():
        codes = q.encode(_frames(test))
        rec = q.decode(codes)[0].t()
    return (rec - test).pow(2).mean().item(), codes[0]


def gap_db(mse: float, rate: float) -> float:
    return 10.0 * math.log10(mse / 2.0 ** (-2.0 * rate))


def fsq_rd(train: torch.Tensor, test: torch.Tensor, levels: list[int], steps: int) -> tuple[float, float]:
    d = train.shape[1]
    inp, out = nn.Linear(d, len(levels)), nn.Linear(len(levels), d)
    fsq = FiniteScalarQuantizer(len(levels), levels)
    opt = torch.optim.Adam([*inp.parameters(), *out.parameters()], lr=1e-2)
    g = torch.Generator().manual_seed(2)
    fsq.train()
    for step in range(steps):
        x = train[torch.randint(train.shape[0], (8192,), generator=g)]
        y = out(fsq(_frames(inp(x))).z_q[0].t())
        loss = (y - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == steps * 3 // 4:
            for group in opt.param_groups:
                group["lr"] = 1e-3
    fsq.eval()
    with torch.no_grad():
        codes = fsq.encode(_frames(inp(test)))
        rec = out(fsq.decode(codes)[0].t())
    used = codes.unique().numel() / fsq.codebook_size
    return (rec - test).pow(2).mean().item(), used


def rvq_oracle(train: torch.Tensor, test: torch.Tensor, k: int, stages: int, iters: int) -> float:
    residual_tr, residual_te = train.clone(), test.clone()
    for _ in range(stages):
        cb = kmeans_oracle(residual_tr, k, iters)
        residual_tr = residual_tr - cb[_assign(residual_tr, cb)]
        residual_te = residual_te - cb[_assign(residual_te, cb)]
    return residual_te.pow(2).mean().item()


def run_rd(
    quick: bool,
    epochs: int,
    batch: int,
    vq_kwargs: dict,
    oracle_cache: str | None = None,
    skip_fsq: bool = False,
    sweep: bool = False,
) -> None:
    n_train, n_test = (1 << 16, 1 << 15) if quick else (1 << 20, 1 << 18)
    iters = 30 if quick else 100
    fsq_steps = 300 if quick else 2000
    grid = [(2, 4), (4, 16), (8, 256)] if quick else [(2, 4), (2, 16), (4, 16), (4, 256), (4, 1024), (8, 256)]
    torch.manual_seed(0)
    data = {d: (torch.randn(n_train, d), torch.randn(n_test, d)) for d in (2, 4, 8)}

    def row(name, d, codes, rate, oracle, online, used, secs):
        o_gap = "" if oracle is None else f"{gap_db(oracle, rate):.3f}"
        o_mse = "" if oracle is None else f"{oracle:.4f}"
        delta = "" if oracle is None else f"{10 * math.log10(online / oracle):+.3f}"
        print(
            f"| {name} | {d} | {codes} | {rate:.3f} | {2 ** (-2 * rate):.4f} | {o_mse} | {o_gap} | {online:.4f} "
            f"| {gap_db(online, rate):.3f} | {delta} | {used:.1%} | {secs:.1f} |",
            flush=True,
        )

    cache = json.load(open(oracle_cache)) if oracle_cache and os.path.exists(oracle_cache) else {}

    def cached(key: str, fn, *args) -> float:
        if key not in cache:
            cache[key] = fn(*args)
            if oracle_cache:
                with open(oracle_cache, "w") as f:
                    json.dump(cache, f)
        return cache[key]

    def vq_oracle(train: torch.Tensor, test: torch.Tensor, k: int) -> float:
        # Brute-force Lloyd over 2^20 x K distances per iteration is the slow part: above K = 256 the
        # oracle fits on a 2^18 subsample (>= 256 vectors per centroid).
        fit = train[: 1 << 18] if k > 256 else train
        cb = kmeans_oracle(fit, k, iters)
        return (test - cb[_assign(test, cb)]).pow(2).mean().item()

    if sweep:
        print(
            f"\n### VectorQuantizer settings on i.i.d. N(0,1): train {n_train}, test {n_test}; batch {batch}, "
            f"{epochs} epoch(s)\n"
        )
        # Which defaults win: online - oracle (dB) per setting, on the VQ grid. The chosen defaults are the
        # row with the smallest worst-case gap at 100% utilisation.
        settings = [{"ema_decay": v} for v in (0.8, 0.9, 0.95, 0.99, 0.999)]
        settings += [{"kmeans_iters": 50}, {"dead_code_threshold": 0.0}, {"kmeans_init": False}]
        print("| VectorQuantizer setting | " + " | ".join(f"d={d} K={k}" for d, k in grid) + " | worst |")
        print("|---" * (len(grid) + 2) + "|")
        oracles = {(d, k): cached(f"vq/{d}/{k}/{n_train}/{iters}", vq_oracle, *data[d], k) for d, k in grid}
        for kw in settings:
            cells, worst = [], -math.inf
            for d, k in grid:
                train, test = data[d]
                torch.manual_seed(0)
                q = VectorQuantizer(d, k, **{**vq_kwargs, **kw})
                train_online(q, train, batch, epochs)
                mse, codes = evaluate(q, test)
                delta = 10 * math.log10(mse / oracles[(d, k)])
                worst = max(worst, delta)
                cells.append(f"{delta:+.3f} ({codes.unique().numel() / k:.0%})")
            print(f"| {kw} | " + " | ".join(cells) + f" | {worst:+.3f} |", flush=True)
        print("\ncells: online - oracle in dB (utilisation on the test set); other settings at their defaults.")
        return

    print(
        f"\n### Rate-distortion, i.i.d. N(0,1): train {n_train}, test {n_test} vectors; online: batch {batch}, "
        f"{epochs} epoch(s), VectorQuantizer defaults {vq_kwargs or ''}\n"
    )
    print(
        "| quantizer | d | codes | R (bit/dim) | D(R) | oracle MSE/dim | oracle gap dB | online MSE/dim "
        "| online gap dB | online - oracle dB | utilisation | online time s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for d, k in grid:
        train, test = data[d]
        oracle = cached(f"vq/{d}/{k}/{n_train}/{iters}", vq_oracle, train, test, k)
        torch.manual_seed(0)
        q = VectorQuantizer(d, k, **vq_kwargs)
        t0 = time.perf_counter()
        train_online(q, train, batch, epochs)
        secs = time.perf_counter() - t0
        mse, codes = evaluate(q, test)
        row("VQ", d, k, math.log2(k) / d, oracle, mse, codes.unique().numel() / k, secs)

    rvq_grid = [(8, 16, 2)] if quick else [(8, 16, 2), (4, 32, 2)]
    for d, k, stages in rvq_grid:
        train, test = data[d]
        oracle = cached(f"rvq/{d}/{k}/{stages}/{n_train}/{iters}", rvq_oracle, train, test, k, stages, iters)
        torch.manual_seed(0)
        q = ResidualVectorQuantizer(d, stages, k, **vq_kwargs)
        t0 = time.perf_counter()
        train_online(q, train, batch, epochs)
        secs = time.perf_counter() - t0
        mse, codes = evaluate(q, test)
        used = min(codes[i].unique().numel() / k for i in range(stages))
        row(f"RVQ {stages}x{k}", d, f"{k}^{stages}", stages * math.log2(k) / d, oracle, mse, used, secs)

    levels = [8, 5, 5, 5]
    train, test = data[4]
    if skip_fsq:
        return
    t0 = time.perf_counter()
    mse, used = fsq_rd(train, test, levels, fsq_steps)
    row(
        f"FSQ {levels}",
        4,
        math.prod(levels),
        math.log2(math.prod(levels)) / 4,
        None,
        mse,
        used,
        time.perf_counter() - t0,
    )
    print(
        "\noracle: offline k-means at the same (d, K) (RVQ: stage-wise k-means on the residuals); "
        "utilisation: codes used on the test set (RVQ: the least-used stage)."
    )


# ----------------------------------------------------------------------------------------------------------
# Part 2: speed and memory against vector-quantize-pytorch


def build(lib: str, kind: str, dim: int, k: int, stages: int, x: torch.Tensor) -> nn.Module:
    """A quantizer in training mode whose codebook(s) are the k-means state (written in directly)."""
    torch.manual_seed(0)
    frames = x.transpose(1, 2).reshape(-1, dim)
    init = frames[torch.randperm(frames.shape[0])[:k]].clone()
    rotation = kind == "vq-rot"
    if lib == "voxtok":
        if kind in ("vq", "vq-rot"):
            q = VectorQuantizer(dim, k, rotation_trick=rotation)
            vqs = [q]
        elif kind == "rvq":
            q = ResidualVectorQuantizer(dim, stages, k)
            vqs = list(q.stages)
        else:
            return FiniteScalarQuantizer(dim, [8, 5, 5, 5]).train()
        with torch.no_grad():
            for i, vq in enumerate(vqs):
                cb = init if i == 0 else init * 0.5**i
                vq.codebook.copy_(cb)
                vq.ema_sum.copy_(cb * 4.0)
                vq.ema_count.fill_(4.0)
                vq.initialized.fill_(True)
        return q.train()
    from vector_quantize_pytorch import FSQ, ResidualVQ, VectorQuantize

    # Same settings as voxtok's defaults: EMA decay, dead-code threshold, and straight-through unless the
    # case is the rotation trick (vector-quantize-pytorch turns the rotation trick on by default).
    decay = VectorQuantizer(1, 1).ema_decay
    if kind in ("vq", "vq-rot"):
        q = VectorQuantize(
            dim=dim,
            codebook_size=k,
            decay=decay,
            kmeans_init=True,
            threshold_ema_dead_code=2,
            rotation_trick=rotation,
        )
        books = [q._codebook]
    elif kind == "rvq":
        q = ResidualVQ(
            dim=dim,
            num_quantizers=stages,
            codebook_size=k,
            decay=decay,
            kmeans_init=True,
            threshold_ema_dead_code=2,
            rotation_trick=False,
        )
        books = [layer._codebook for layer in q.layers]
    else:
        return FSQ(levels=[8, 5, 5, 5], dim=dim).train()
    with torch.no_grad():
        for i, book in enumerate(books):
            cb = init if i == 0 else init * 0.5**i
            book.embed.copy_(cb[None])
            book.embed_avg.copy_(cb[None] * 4.0)
            book.cluster_size.fill_(4.0)
            book.initted.fill_(True)
    return q.train()


def step(lib: str, q: nn.Module, x: torch.Tensor, backward: bool) -> None:
    if lib == "voxtok":
        xin = x.requires_grad_(backward)
        out = q(xin)
        if backward:
            (out.z_q.square().mean() + out.loss).backward()
    else:
        xin = x.transpose(1, 2).requires_grad_(backward)  # vector-quantize-pytorch takes [B, T, D]
        res = q(xin)
        zq = res[0]
        loss = res[-1].sum() if isinstance(res, tuple) and len(res) == 3 and torch.is_tensor(res[-1]) else 0.0
        if backward:
            (zq.square().mean() + loss).backward()


def memory_child(spec: str) -> None:
    import psutil

    cfg = json.loads(spec)
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    x = torch.randn(cfg["batch"], cfg["dim"], cfg["n"] // cfg["batch"])
    q = build(cfg["lib"], cfg["kind"], cfg["dim"], cfg["k"], cfg["stages"], x)
    before = psutil.Process().memory_info().rss
    # ru_maxrss survives execve (it would report the parent's peak), so reset this process's own high-water
    # mark (VmHWM) and read it back after the step.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    step(cfg["lib"], q, x, cfg["backward"])
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"peak_mb": (hwm - before) / 2**20}))


def peak_memory(**cfg) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", json.dumps(cfg)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def run_speed(quick: bool, repeats: int, threads: int) -> None:
    torch.set_num_threads(threads)
    n, dim, k, stages = (4096, 512, 1024, 2) if quick else (16384, 512, 4096, 4)
    rvq_k = k // 4
    batch = 16
    print(
        f"\n### Speed and peak memory, CPU ({torch.get_num_threads()} threads): N = {n} frames, dim {dim}, "
        f"VQ K = {k}, RVQ {stages} x {rvq_k}, FSQ [8, 5, 5, 5]; EMA, k-means done; median of {repeats}\n"
    )
    print(
        "| quantizer | step | voxtok ms | vector-quantize-pytorch ms | speed-up | voxtok peak MB "
        "| baseline peak MB | memory ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    x = torch.randn(batch, dim, n // batch)
    for kind in ("vq", "vq-rot", "rvq", "fsq"):
        kk = rvq_k if kind == "rvq" else k
        mods = {lib: build(lib, kind, dim, kk, stages, x) for lib in ("voxtok", "vqp")}
        for backward in (False, True):
            times: dict[str, list[float]] = {"voxtok": [], "vqp": []}
            for lib in mods:  # warm-up
                step(lib, mods[lib], x.clone(), backward)
            for _ in range(repeats):
                for lib in mods:  # interleaved, so load on the shared machine hits both alike
                    xi = x.clone()
                    t0 = time.perf_counter()
                    step(lib, mods[lib], xi, backward)
                    times[lib].append(time.perf_counter() - t0)
            mem = {
                lib: peak_memory(
                    lib=lib,
                    kind=kind,
                    dim=dim,
                    k=kk,
                    stages=stages,
                    n=n,
                    batch=batch,
                    backward=backward,
                    threads=threads,
                )
                for lib in mods
            }
            tv, tb = statistics.median(times["voxtok"]) * 1e3, statistics.median(times["vqp"]) * 1e3
            name = {
                "vq": f"VQ K={k}",
                "vq-rot": f"VQ K={k}, rotation trick",
                "rvq": f"RVQ {stages}x{rvq_k}",
                "fsq": "FSQ [8,5,5,5]",
            }[kind]
            print(
                f"| {name} | {'fwd+bwd' if backward else 'fwd'} | {tv:.0f} | {tb:.0f} | {tb / tv:.2f}x "
                f"| {mem['voxtok']:.0f} | {mem['vqp']:.0f} | {mem['voxtok'] / max(mem['vqp'], 1e-9):.2f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("rd", "speed", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="small grid (seconds, not minutes)")
    parser.add_argument("--epochs", type=int, default=2, help="online passes over the training set")
    parser.add_argument("--batch", type=int, default=8192, help="online batch (vectors per step)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per case (median reported)")
    parser.add_argument(
        "--vq", type=json.loads, default={}, help="VectorQuantizer overrides, e.g. '{\"ema_decay\": 0.9}'"
    )
    parser.add_argument("--oracle-cache", help="json file to keep offline k-means results between runs")
    parser.add_argument("--sweep", action="store_true", help="part 1 as a sweep of VectorQuantizer settings")
    parser.add_argument("--skip-fsq", action="store_true", help="part 1 without the FSQ row")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for part 2")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    if args.part in ("rd", "all"):
        # Small ops: one thread, since on a loaded machine two threads spend more time in OpenMP barriers
        # than computing (80x slower steps measured here). Results do not depend on the thread count.
        torch.set_num_threads(1)
        run_rd(args.quick, args.epochs, args.batch, args.vq, args.oracle_cache, args.skip_fsq, args.sweep)
    if args.part in ("speed", "all"):
        run_speed(args.quick, 3 if args.quick else args.repeats, args.threads)


if __name__ == "__main__":
    main()
