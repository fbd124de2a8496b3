"""What a paid judge sees of the spending cap: a meter it reserves each call's worst case from.

The cap itself (``negclean.cascade.budget``: ``Budget`` and its per-stage view ``StageMeter``) belongs to the
cascade, which comes after the judges; a judge declares ``meters_budget = True`` and is handed a ``SpendMeter``
(``judge(..., budget=meter)``). ``Reservation`` is the value that travels between the two.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Reservation:
    """Money held for one call (or one batch file) until it is settled.

    ``recorded``: the Future of the ledger row (None when nothing is persisted); a caller must wait for it
    before sending the call, so that a killed process still counts the call."""

    amount: float
    recorded: Future[Any] | None = None


class SpendMeter(Protocol):
    """A spending cap seen through one stage's price (``negclean.cascade.budget.StageMeter``)."""

    @property
    def free(self) -> bool: ...

    @property
    def refused(self) -> str | None: ...

    def reserve(
        self, tokens_in: int, max_tokens_out: int, *, what: str = "the next call", ref: str | None = None
    ) -> Reservation | None:
        """Reserve a call's worst case; None: do not send it (the budget is spent)."""
        ...

    def confirmed(self, reservation: Reservation) -> bool:
        """True once the reservation's ledger row is written and it still fits: send the call only then."""
        ...

    def settle(self, reservation: Reservation, tokens_in: int, tokens_out: int) -> None: ...

    def settle_worst(self, reservation: Reservation) -> None: ...

    def settle_earlier(self, ref: str, tokens_in: int, tokens_out: int) -> bool: ...


__all__ = ["Reservation", "SpendMeter"]
