"""Learning-rate schedules as step → factor functions for ``LambdaLR``."""

from __future__ import annotations

import math


def warmup_cosine(warmup: int, total: int, floor: float = 0.05):
    """Linear warm-up, then cosine decay to ``floor`` of the peak at ``total`` steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
