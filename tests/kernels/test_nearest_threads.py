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


def _fresh_thread_count() -> int:
    """``torch.get_num_threads()`` as a thread torch has not seen yet reads it: the process-wide count every new
    thread (a data loader's, a server's next request) starts with."""
    import threading

    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def _search_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x, c = torch.randn(n, 8, generator=g), torch.randn(1024, 8, generator=g)
    return x, c, torch.cdist(x.double(), c.double()).argmin(1)


def test_a_search_leaves_other_threads_thread_count_alone() -> None:
    # A watcher samples, while the main thread searches with two workers, the count a long-lived thread sees and
    # the count a new thread starts with. Setting torch.set_num_threads(1) in the workers changed the second.
    import threading

    from voxtok.kernels import nearest

    torch.set_num_threads(2)
    x, c, expected = _search_data(60000, 0)
    stop, searching, samples = threading.Event(), threading.Event(), []

    def watch() -> None:
        while not stop.is_set():
            if searching.is_set():
                samples.append((torch.get_num_threads(), _fresh_thread_count()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        searching.set()
        idx, _ = nearest(x, c)
        searching.clear()
    finally:
        stop.set()
        watcher.join()
    assert torch.equal(idx, expected)
    assert len(samples) >= 3, f"the watcher sampled {len(samples)} times during the search"
    assert set(samples) == {(2, 2)}, sorted(set(samples))
    assert torch.get_num_threads() == 2 and _fresh_thread_count() == 2


def test_two_concurrent_searches_are_both_right() -> None:
    import threading

    from voxtok.kernels import nearest

    torch.set_num_threads(2)
    data = [_search_data(40000, seed) for seed in (1, 2)]
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def search(i: int) -> None:
        try:
            for _ in range(2):
                results[i] = nearest(data[i][0], data[i][1])[0]
        except BaseException as e:  # surfaced below: a thread's exception is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=search, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(2):
        assert torch.equal(results[i], data[i][2])
    assert torch.get_num_threads() == 2 and _fresh_thread_count() == 2


def test_workers_are_single_threaded_on_their_own_thread_only() -> None:
    import threading

    from voxtok.kernels.reference import _single_threaded_here, _thread_local_thread_setters

    if _thread_local_thread_setters() is None:
        pytest.skip("this torch build has no OpenMP thread count to set per thread (the search then runs in one)")
    torch.set_num_threads(2)
    seen = []

    def worker() -> None:
        seen.append((_single_threaded_here(), torch.get_num_threads()))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [(True, 1)]
    assert torch.get_num_threads() == 2 and _fresh_thread_count() == 2
