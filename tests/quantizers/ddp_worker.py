"""One rank of the two-process gloo check in test_distributed.py (run as a script, not collected by pytest).

Each rank trains the same quantizers on different data and records, after k-means init, EMA steps and a
dead-code restart, a digest of every codebook tensor; the test compares the digests across ranks.
"""

from __future__ import annotations

import hashlib
import json
import sys

import torch
import torch.distributed as dist

from voxtok.quantizers import ResidualVectorQuantizer, VectorQuantizer


def digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(rank: int, world: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(1000 + rank)  # different parameters, RNG and data per rank: only syncing can agree
    models = {
        "vq": VectorQuantizer(4, 16, dead_code_threshold=2.0),
        "vq_learned_cosine": VectorQuantizer(4, 16, ema_decay=None, metric="cosine", dead_code_threshold=2.0),
        "rvq": ResidualVectorQuantizer(4, 2, 8, codebook_dim=3),
    }
    record: dict[str, object] = {"data": [], "restarts": {}}
    for name, q in models.items():
        q.train()
        steps: list[str] = []
        if name == "rvq":  # projections are parameters (DDP would broadcast them): start them equal
            with torch.no_grad():
                for p in q.parameters():
                    dist.broadcast(p, 0)
        for step in range(6):
            z = torch.randn(2, 4, 24) + rank  # ranks see differently distributed data
            mask = torch.ones(2, 24, dtype=torch.bool)
            if step == 3 and rank == 0:
                mask[:] = False  # rank 0 has only padding: restarts must draw from rank 1
            if step == 3:
                vq = q if isinstance(q, VectorQuantizer) else q.stages[0]
                vq.ema_count[:5] = 0.0  # force dead codes (identically on both ranks)
            before = vq.codebook.clone() if step == 3 else None
            q(z, mask)
            if step == 3:
                record["restarts"][name] = int((vq.codebook != before).any(-1)[:5].sum())
            steps.append(digest(q))
            if name == "vq":
                record["data"].append(hashlib.sha256(z.numpy().tobytes()).hexdigest())
        record[name] = steps
    dist.barrier()
    dist.destroy_process_group()
    with open(out, "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
