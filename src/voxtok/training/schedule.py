"""Learning-rate schedules as multipliers of the base rate: linear warm-up, then constant, cosine, linear or
exponential decay. Progress is counted in the optimizer's own updates, or, when training has a wall-clock budget
(``Trainer(max_time=...)``) and no step count, in the fraction of that budget spent.

The multiplier is a plain function of the step (``LambdaLR``), so the scheduler's state in a checkpoint is a step
count and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["SCHEDULES", "lr_multiplier"]

SCHEDULES = ("constant", "cosine", "linear", "exponential")


def lr_multiplier(kind: str, warmup_steps: int, total_steps: int | None, min_lr_ratio: float = 0.0,
                  gamma: float = 0.999996, progress: Callable[[], float] | None = None
                  ) -> Callable[[int], float]:  # fmt: skip
    """A ``step -> multiplier`` function for ``torch.optim.lr_scheduler.LambdaLR``.

    Args:
        kind: ``constant``; ``cosine`` (Vocos, WavTokenizer: half a cosine from 1 to ``min_lr_ratio``); ``linear``
            (BigCodec / X-codec2: straight down to ``min_lr_ratio``, then flat); ``exponential`` (DAC:
            ``gamma ** step``, floored at ``min_lr_ratio``).
        warmup_steps: linear warm-up from ``1 / warmup_steps`` to 1 over this many updates (0 = none).
        total_steps: updates over which cosine / linear decay; needed by those unless ``progress`` is given.
        min_lr_ratio: the floor, as a fraction of the base rate.
        gamma: the exponential decay per update.
        progress: a function returning the fraction of training done, in [0, 1] (a wall-clock budget); used by
            cosine and linear in place of ``step / total_steps``.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULES)}; got {kind!r}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0; got {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1]; got {min_lr_ratio}")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1]; got {gamma}")
    if kind in ("cosine", "linear") and progress is None and (total_steps is None or total_steps <= warmup_steps):
        raise ValueError(
            f"a {kind} schedule needs total_steps > warmup_steps ({warmup_steps}); got {total_steps}. Set "
            "--trainer.max_steps, --model.total_steps, or a time budget (--trainer.max_time)"
        )

    def multiplier(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        if kind == "constant":
            return warm
        if kind == "exponential":
            return warm * max(min_lr_ratio, gamma ** max(0, step - warmup_steps))
        if progress is not None:
            p = progress()
        else:
            assert total_steps is not None
            p = (step - warmup_steps) / (total_steps - warmup_steps)
        p = min(1.0, max(0.0, p))
        if kind == "cosine":
            return warm * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))
        return warm * (1 - (1 - min_lr_ratio) * p)

    return multiplier
