"""Two gloo processes on the CPU, different data per rank: every codebook is identical on both ranks after
k-means init, EMA steps and a dead-code restart (vector-quantize-pytorch #25 / #105 / #222, espnet #6284)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("ddp_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def test_two_ranks_hold_identical_codebooks(tmp_path: Path) -> None:
    init = f"file://{tmp_path / 'rendezvous'}"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(r), "2", init, str(outs[r])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    logs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    r0, r1 = (json.loads(o.read_text()) for o in outs)
    assert all(a != b for a, b in zip(r0["data"], r1["data"], strict=True))  # the ranks really saw different data
    for name in ("vq", "vq_learned_cosine", "rvq"):
        assert r0[name] == r1[name], f"{name}: codebooks differ across ranks at steps " + str(
            [i for i, (a, b) in enumerate(zip(r0[name], r1[name], strict=True)) if a != b]
        )
        assert len(set(r0[name])) == len(r0[name])  # and they did change at every step
        assert r0["restarts"][name] == r1["restarts"][name] == 5  # all forced dead codes restarted
