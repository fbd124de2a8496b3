"""Estimate what a cheap stage missed from the random audit sample of what it cleared."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MissEstimate:
    """Estimated false negatives among candidates a stage cleared, with a Wilson interval."""

    stage: str
    cleared: int
    audited: int
    found: int
    rate: float
    rate_low: float
    rate_high: float

    @property
    def missed(self) -> float:
        return self.rate * self.cleared

    @property
    def missed_low(self) -> float:
        return self.rate_low * self.cleared

    @property
    def missed_high(self) -> float:
        return self.rate_high * self.cleared

    def describe(self) -> str:
        return (
            f"{self.stage}: {self.found}/{self.audited} audited candidates were false negatives -> "
            f"~{self.missed:.0f} missed among {self.cleared} cleared "
            f"(95% CI {self.missed_low:.0f}-{self.missed_high:.0f})"
        )


def wilson_interval(successes: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sane at 0 and n, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate_misses(stage: str, *, cleared: int, audited: int, found: int, z: float = 1.96) -> MissEstimate:
    low, high = wilson_interval(found, audited, z=z)
    rate = found / audited if audited else 0.0
    return MissEstimate(stage, cleared, audited, found, rate, low, high)
