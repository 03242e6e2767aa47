"""Torch reference for nearest-code search: chunked over N and K, so its scratch is bounded whatever N x K.

This is the CPU path and the specification the Triton kernel is tested against. For every block of ``block_n``
rows it streams the codebook in blocks of ``block_k`` codes: one ``addmm`` writes the scores ``||c||^2 - 2 x.c``
into a reused tile, the tile is reduced to each row's best score, its index and the runner-up's score, and these
are kept across K blocks (strict ``<``, so an earlier block keeps a tie: first index wins, as ``torch.argmin``).

Exact on latents far from the origin. ``||x||^2 - 2 x.c + ||c||^2`` cancels catastrophically when ``|x|`` and
``|c|`` are large next to ``|x - c|`` (codebook rows at mean 1000, spread 1, D=8: fp32 ``matmul + argmin`` picks
a wrong code for 44% of the rows). Distances are translation invariant, so both sides are first translated by a
pivot, the codebook row nearest the codebook's mean (found with the norms): the scores then carry the spread of
the codebook, not its offset. Then each row is certified: fp32 rounding of the scores is bounded (``_uncertain``),
and a row whose runner-up scores within that bound of its best is searched again with float64 scores. So the
index is the float64 argmin of the distances, whatever the offset; ties go to the lowest index.

Two measurements on a 2-core x86-64 CPU (AVX-512) shaped the tile reduction:
- ``torch.min(tile, dim=1)`` (values and indices) runs at ~1.1 Gelem/s per core, while ``torch.amin`` (values
  only) runs at ~15 Gelem/s. So the tile is reduced in two stages: ``amin`` over groups of ``GROUP`` adjacent
  codes, then ``min`` over the K / GROUP group minima, then ``argmin`` inside the one winning group, and only for
  the rows whose running minimum this tile improves (after K block j, about 1/j of them on random data).
- At D=8 the matmul writes 2 flops per 4-byte element: the work is bound by memory traffic, so the tile is sized
  (``TILE_ELEMS``, 4 MiB) to stay in cache between the ``addmm`` that writes it and the reductions that read it,
  and is never written to DRAM. 4 MiB beat 1 MiB and 16 MiB by 10-15% at D=8 and D=64 (N=1e5, K=4096).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

TILE_ELEMS = 1 << 20  # distance-tile elements (4 MiB in fp32): stays in cache between matmul and reductions
MAX_BLOCK_K = 2048  # codes per tile; a multiple of GROUP
GROUP = 64  # codes per first-stage amin group (amin over 64 contiguous floats vectorises; 8 or 16 do not)
SCRATCH_BYTES = 64 << 20  # upper bound on the tiles plus the per-block copies of x, of the codes and candidates
_NORM_BLOCK_BYTES = 1 << 20  # rows per block of the codebook passes (centre, norms)
TRANSLATED_COPY_BYTES = 16 << 20  # codebooks up to this size are translated once per call, larger ones per tile


def compute_dtype(x: Tensor, codebook: Tensor) -> torch.dtype:
    """float64 when either input is float64, else float32 (fp16 / bf16 are upcast: the CPU has no fast path)."""
    return torch.float64 if torch.float64 in (x.dtype, codebook.dtype) else torch.float32


def _row_blocks(rows: Tensor) -> int:
    return max(1, _NORM_BLOCK_BYTES // max(1, rows.shape[1] * rows.element_size()))


def row_mean(rows: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``[K, D] -> [D]`` mean row, accumulated in ``dtype`` (default: the rows') over ~1 MiB blocks (no copy of a
    fp16 / bf16 codebook in the wider dtype)."""
    dtype = dtype or rows.dtype
    acc = torch.zeros(rows.shape[1], dtype=dtype, device=rows.device)
    step = _row_blocks(rows)
    for i in range(0, rows.shape[0], step):
        acc += rows[i : i + step].sum(dim=0, dtype=dtype)
    return acc / max(1, rows.shape[0])


def pivot_row(rows: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``[K, D] -> [D]``: the row nearest the mean row (first on a tie), in ``dtype`` (default: the rows').

    The search translates by it. A row of the codebook rather than the mean itself: translating by it is exact
    for data on a common grid (integers stay integers, so exact ties stay exact), and every translated row is
    still within the codebook's spread of the origin."""
    dtype = dtype or rows.dtype
    pivot = torch.argmin(squared_norms(rows, row_mean(rows, dtype)))
    return rows[pivot].to(dtype)


def squared_norms(rows: Tensor, center: Tensor | None = None) -> Tensor:
    """``[K, D] -> [K]`` squared l2 norms of ``rows - center`` (``center`` ``[D]``, default 0), over blocks of
    ~1 MiB written into one reused scratch block; in the wider of the two dtypes.

    A fresh ``[block, D]`` product per block (``vecdot``) fragmented the heap: with the small per-block results
    kept alive in between, glibc could not reuse the freed blocks, and a 65536 x 1024 codebook left ~256 MiB of
    RSS behind. One scratch block and ``out=`` operations allocate nothing per block.
    """
    k, d = rows.shape
    dtype = rows.dtype if center is None else torch.promote_types(rows.dtype, center.dtype)
    out = torch.empty(k, dtype=dtype, device=rows.device)
    step = _row_blocks(rows)
    scratch = torch.empty(min(step, k), d, dtype=dtype, device=rows.device)
    for i in range(0, k, step):
        block = rows[i : i + step]
        n = block.shape[0]
        if center is None:
            diff = torch.mul(block, block, out=scratch[:n])
        else:
            diff = torch.sub(block, center, out=scratch[:n]).square_()
        torch.sum(diff, dim=1, out=out[i : i + n])
    return out


def tile_shape(n: int, k: int, d: int, itemsize: int = 4) -> tuple[int, int]:
    """``(block_n, block_k)`` for ``n`` queries, ``k`` codes of dimension ``d``: a ~4 MiB tile, K in whole groups."""
    block_k = min(MAX_BLOCK_K, -(-k // GROUP) * GROUP)
    block_n = max(1, TILE_ELEMS // block_k)
    # Per-block copies of x (translated and as given) and of the candidates: keep them inside the scratch bound.
    block_n = min(block_n, max(1, (SCRATCH_BYTES // 2) // (3 * d * itemsize)))
    return max(1, min(block_n, n)), block_k


# --------------------------------------------------------------------------------------------------------------
# Tile reduction: each row's best score and its index (first index on a tie), and the runner-up's score.

_INF = float("inf")


def _fold(tile: Tensor, offset: int, best: list[Tensor] | None) -> list[Tensor]:
    """Fold a ``[n, k]`` tile of scores of codes ``offset .. offset + k`` into the running ``[best score, its
    index, runner-up score]`` of each row (the runner-up: the lowest score of any other code).

    Strict ``<`` against the running best (an earlier tile keeps a tie) and first-index reductions inside the tile:
    the lowest index wins, as ``torch.argmin``. Overwrites entries of ``tile`` (it is not read again)."""
    n, k = tile.shape
    if k % GROUP or k < 2 * GROUP:  # narrow or ragged tile: torch.min, then the runner-up without the winner
        val, idx = torch.min(tile, dim=1)
        tile.scatter_(1, idx[:, None], _INF)
        second = torch.amin(tile, dim=1)
        idx += offset
        if best is None:
            return [val, idx, second]
        b1, i1, b2 = best
        take = val < b1
        b2 = torch.where(take, torch.minimum(b1, second), torch.minimum(b2, val))
        return [torch.where(take, val, b1), torch.where(take, idx, i1), b2]
    gmin = torch.amin(tile.unflatten(1, (k // GROUP, GROUP)), dim=2)  # [n, k / GROUP]
    val, group = torch.min(gmin, dim=1)  # first group holding the row minimum
    lanes = torch.arange(GROUP, device=tile.device)
    if best is None:
        inside = tile.gather(1, group[:, None] * GROUP + lanes)  # [n, GROUP]: the winning group
        pos = torch.argmin(inside, dim=1)  # first index in the group
        # Runner-up: the second lowest in the winning group or the best other group's minimum.
        inside.scatter_(1, pos[:, None], _INF)
        gmin.scatter_(1, group[:, None], _INF)
        second = torch.minimum(torch.amin(inside, dim=1), torch.amin(gmin, dim=1))
        return [val, group * GROUP + pos + offset, second]
    b1, i1, b2 = best
    torch.minimum(b2, val, out=b2)  # the tile's best competes for second place (the improved rows: below)
    # Only rows this tile improves need an index; after the first K block that is a shrinking minority.
    rows = (val < b1).nonzero().squeeze(1)
    if rows.numel():
        group = group.index_select(0, rows)
        inside = tile[rows[:, None], group[:, None] * GROUP + lanes]
        pos = torch.argmin(inside, dim=1)
        inside.scatter_(1, pos[:, None], _INF)
        gmin = gmin.index_select(0, rows).scatter_(1, group[:, None], _INF)
        second = torch.minimum(torch.amin(inside, dim=1), torch.amin(gmin, dim=1))
        b2.index_copy_(0, rows, torch.minimum(b1.index_select(0, rows), second))
        b1.index_copy_(0, rows, val.index_select(0, rows))
        i1.index_copy_(0, rows, group * GROUP + pos + offset)
    return best


def _uncertain(best: list[Tensor], d_best: Tensor, dim: int) -> Tensor:
    """Rows whose best code the fp32 scores cannot certify: the runner-up's score is within the scores' rounding
    error of the best's. Returns their positions ``[u]``.

    The scores are ``s_k = ||c'_k||^2 - 2 x'.c'_k`` on translated rows ``x' = x - p``, ``c' = c - p`` (``d_k = s_k
    + ||x'||^2``). A dot product of length D accumulated in fp32, in any order, is off by at most
    ``gamma_D sum |x'_i c'_i| <= gamma_D ||x'|| ||c'||`` (``gamma_D = D u / (1 - D u)``, ``u = 2^-24``; Higham,
    Accuracy and Stability of Numerical Algorithms, 3.1), the norms by ``gamma_D ||c'||^2``, the translation and
    the final sum by a few ``u`` more. A code that could beat the winner has ``d_k <= d_best``, so
    ``||c'_k|| <= ||x'|| + r`` with ``r = sqrt(d_best)``, and each of the two scores is then off by at most
    ``(gamma_D + 3u) (3 ||x'||^2 + 4 ||x'|| r + r^2) <= (gamma_D + 3u) (5 ||x'||^2 + 3 r^2)``. A gap larger than
    twice that certifies the winner. ``||x'||^2`` is taken as ``d_best - s_best``, which is off by ``gamma_D`` of
    the bound itself, well inside the 1% slack added (2.02 instead of 2) for D up to ~3e4.
    """
    u = 2.0**-24
    k = 2.02 * ((dim + 3) * u / (1 - (dim + 3) * u) + 3 * u)
    b1, b2 = best[0], best[2]
    # margin = k (5 ||x'||^2 + 3 d_best) with ||x'||^2 = max(d_best - b1, 0)
    margin = torch.mul(d_best, 8 * k).sub_(torch.minimum(b1, d_best), alpha=5 * k)
    return ((b2 - b1) <= margin).nonzero().squeeze(1)


def _exact_argmin(x: Tensor, codes: Tensor, center: Tensor, metric: str, chunk: int) -> Tensor:
    """``[u, D]`` queries -> ``[u]`` index of the nearest code by float64 scores of the translated rows (first on a
    tie), in blocks of ``chunk`` codes."""
    c64 = center.double()
    x64 = x.double()
    if metric == "cosine":
        x64 = F.normalize(x64, dim=1)
    x64 -= c64
    best_val = best_idx = None
    for k0 in range(0, codes.shape[0], chunk):
        block = codes[k0 : k0 + chunk].double() - c64
        scores = torch.addmm(block.square().sum(1), x64, block.T, beta=1, alpha=-2)
        val, idx = torch.min(scores, dim=1)
        idx += k0
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            take = val < best_val
            best_val, best_idx = torch.where(take, val, best_val), torch.where(take, idx, best_idx)
    return best_idx


# --------------------------------------------------------------------------------------------------------------
# Worker threads that are single-threaded without touching process-wide state.


@functools.cache
def _thread_local_thread_setters() -> tuple[Callable[[int], object], ...] | None:
    """Setters of the *calling thread's* OpenMP and MKL thread counts, or None where they cannot be reached.

    ``torch.set_num_threads`` also stores a process-wide count (the one every thread torch has not seen yet starts
    with), resizes a shared thread pool and clears a shared cache, so a search must not call it. OpenMP's thread
    count is a per-thread setting (``omp_set_num_threads`` sets the calling thread's ``nthreads-var``), and so is
    MKL's ``MKL_Set_Num_Threads_Local``; torch's ``get_num_threads`` reads the calling thread's OpenMP count."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    for path in sorted((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*")):
        try:
            lib = ctypes.CDLL(str(path))  # already loaded: the same handle; symbols of its dependencies resolve too
            omp = lib.omp_set_num_threads
        except (OSError, AttributeError):
            continue
        omp.argtypes, omp.restype = [ctypes.c_int], None
        setters: list[Callable[[int], object]] = [omp]
        try:
            # MKL's C interface (the lower-case names are its Fortran interface, which takes a pointer).
            mkl = lib.MKL_Set_Num_Threads_Local
        except AttributeError:
            pass  # no MKL in this build: OpenMP's count is all
        else:
            mkl.argtypes, mkl.restype = [ctypes.c_int], ctypes.c_int
            setters.append(mkl)
        return tuple(setters)
    return None


def _single_threaded_here() -> bool:
    """Make the calling (worker) thread's intra-op parallelism one thread; False where that is not possible."""
    setters = _thread_local_thread_setters()
    if setters is None:
        return False
    torch.get_num_threads()  # torch's lazy per-thread set-up first, so that it does not undo the setting below
    for fn in setters:
        fn(1)
    return torch.get_num_threads() == 1


# --------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def nearest_reference(
    x: Tensor,
    codebook: Tensor,
    metric: str = "l2",
    codebook_sqnorm: Tensor | None = None,
    codebook_center: Tensor | None = None,
    *,
    block_n: int | None = None,
    block_k: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Nearest codebook row for every row of ``x``, with bounded memory. Inputs are assumed validated.

    Args:
        x: ``[N, D]`` floating queries.
        codebook: ``[K, D]`` floating codes, K >= 1.
        metric: ``"l2"`` or ``"cosine"`` (both sides l2-normalised, then l2).
        codebook_sqnorm: optional ``[K]`` squared norms ``||c - codebook_center||^2`` (ignored for ``"cosine"``).
        codebook_center: optional ``[D]`` centre the search translates by (ignored for ``"cosine"``). Default:
            ``pivot_row(codebook)``, or 0 when ``codebook_sqnorm`` is given without it (norms of the raw rows).
        block_n, block_k: tile shape override (tests use it to exercise ragged blocks).

    Returns:
        ``(indices [N] int64, distances [N] float32)``: ``distances`` is the squared l2 distance to the chosen
        code, computed from the difference ``x - c`` (no cancellation), so it is >= 0.
    """
    dtype = compute_dtype(x, codebook)
    n_rows, dim = x.shape
    k_codes = codebook.shape[0]
    if metric == "cosine":
        codes = F.normalize(codebook.to(dtype), dim=1)  # one normalised copy
        center = pivot_row(codes)
        sqnorm = squared_norms(codes, center)
    else:
        codes = codebook  # converted to `dtype` tile by tile, while it is translated
        if codebook_center is not None:
            center = codebook_center.to(dtype)
        elif codebook_sqnorm is not None:
            center = torch.zeros(dim, dtype=dtype, device=x.device)
        else:
            center = pivot_row(codes, dtype)
        sqnorm = squared_norms(codes, center) if codebook_sqnorm is None else codebook_sqnorm.to(dtype)

    itemsize = torch.finfo(dtype).bits // 8
    # Translated (and converted to `dtype`) once, or block by block in each worker when that copy would be large.
    translated = torch.sub(codes, center) if k_codes * dim * itemsize <= TRANSLATED_COPY_BYTES else None
    bn, bk = tile_shape(n_rows, k_codes, dim, itemsize)
    bn, bk = block_n or bn, block_k or bk
    bk = min(bk, k_codes)
    # float64 inputs are searched in float64: nothing to certify. Otherwise rows the fp32 scores cannot certify are
    # searched again with float64 scores, in blocks of ~1 MiB of float64 codes.
    certify = dtype != torch.float64
    indices = torch.empty(n_rows, dtype=torch.int64, device=x.device)
    distances = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    starts = iter(range(0, n_rows, bn))  # shared by the workers: next() on a range iterator is atomic

    def work() -> None:
        # Per-worker buffers reused for every block: past the first block a worker allocates only [n] vectors.
        scratch = torch.empty(bn * bk, dtype=dtype, device=x.device)
        code_block = torch.empty(bk, dim, dtype=dtype, device=x.device) if translated is None else None
        x_block = torch.empty(bn, dim, dtype=dtype, device=x.device)
        winners = torch.empty(bn, dim, dtype=codes.dtype, device=x.device)
        recheck: list[Tensor] = []  # rows to search again
        for n0 in starts:
            xn = x[n0 : n0 + bn].to(dtype)
            if metric == "cosine":
                xn = F.normalize(xn, dim=1)
            n = xn.shape[0]
            xs = torch.sub(xn, center, out=x_block[:n])
            best = None
            for k0 in range(0, k_codes, bk):
                k = min(bk, k_codes - k0)
                if translated is None:
                    cs = torch.sub(codes[k0 : k0 + k], center, out=code_block[:k])
                else:
                    cs = translated[k0 : k0 + k]
                tile = scratch[: n * k].view(n, k)
                torch.addmm(sqnorm[k0 : k0 + k], xs, cs.T, beta=1, alpha=-2, out=tile)
                kg = k // GROUP * GROUP if k >= 2 * GROUP else k  # a ragged tail is folded on its own, after
                best = _fold(tile[:, :kg], k0, best)
                if kg < k:
                    best = _fold(tile[:, kg:], k0 + kg, best)
            idx = best[1]
            indices[n0 : n0 + n] = idx
            # The distance from the difference of the untranslated rows: no cancellation.
            dist = torch.index_select(codes, 0, idx, out=winners[:n]).to(dtype).sub_(xn).square_().sum(dim=1)
            distances[n0 : n0 + n] = dist
            if certify:
                unsure = _uncertain(best, dist, dim)
                if unsure.numel():
                    recheck.append(unsure + n0)
        if recheck:  # this worker's uncertain rows, together: one more pass over the codebook
            _search_again(torch.cat(recheck), x, codes, center, metric, dtype, indices, distances)

    threads = torch.get_num_threads()
    per_worker = (bn * bk + (bk * dim if translated is None else 0) + 3 * bn * dim) * itemsize + _NORM_BLOCK_BYTES
    workers = min(threads, -(-n_rows // bn), max(1, SCRATCH_BYTES // per_worker))
    if x.device.type != "cpu" or workers <= 1 or _thread_local_thread_setters() is None:
        work()
    else:
        _run_workers(work, workers)
    return indices, distances


def _search_again(
    rows: Tensor,
    x: Tensor,
    codes: Tensor,
    center: Tensor,
    metric: str,
    dtype: torch.dtype,
    indices: Tensor,
    distances: Tensor,
) -> None:
    """Search ``x[rows]`` again with float64 scores and write their indices and exact distances: all such rows of
    a worker together, in blocks of ~1 MiB of float64 codes and of scores."""
    chunk = max(1, min(codes.shape[0], _NORM_BLOCK_BYTES // (8 * codes.shape[1])))
    step = max(1, _NORM_BLOCK_BYTES // (8 * chunk))
    for r0 in range(0, rows.numel(), step):
        part = rows[r0 : r0 + step]
        idx = _exact_argmin(x[part], codes, center, metric, chunk)
        xn = x[part].to(dtype)
        if metric == "cosine":
            xn = F.normalize(xn, dim=1)
        indices[part] = idx
        distances[part] = (codes[idx].to(dtype) - xn).square().sum(dim=1).float()


def _run_workers(work: Callable[[], None], workers: int) -> None:
    """Run ``work`` in ``workers`` threads, each single-threaded.

    One single-threaded worker per intra-op thread, each pulling row blocks from a shared iterator. Every op of the
    search is short (a ~4 MiB tile), and on a loaded machine an OpenMP team per op waits a scheduler slice at each
    barrier: at 2 threads with other processes running, that made the search 10-25x slower than at 1 thread.
    Independent workers never wait for each other, and a worker on a busy core just takes fewer blocks. Each worker
    sets its own thread's count only: other threads of the process, and threads started meanwhile, keep theirs.
    Grad and inference modes are thread-local: a worker starts with neither, and writing into an output made under
    the caller's inference_mode (Codec.encode) from outside it is refused. Workers take the caller's modes."""
    inference = torch.is_inference_mode_enabled()

    def single_threaded_work() -> None:
        _single_threaded_here()
        with torch.inference_mode(inference), torch.no_grad():
            work()

    with ThreadPoolExecutor(workers) as pool:
        for job in [pool.submit(single_threaded_work) for _ in range(workers)]:
            job.result()
