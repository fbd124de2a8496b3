"""A hard, cumulative spending cap (``max_cost`` / ``--max-cost``).

Before each paid model call its worst case (input tokens, with a margin, plus ``max_tokens`` output at the
stage's price) is reserved; after the call the reservation is settled to the actual cost. A call whose
worst case does not fit under the cap is not sent, and from then on no call is started (calls already in
flight finish and are stored): actual spend cannot pass the cap unless a provider counts input tokens more
than 10% above our count.

Spend is persisted in the judgment store's ``spend`` ledger under a *scope*: ``negclean judge`` / ``run``
use the run's output folder, so a resume of the same run continues from what it already spent, while other
runs sharing the store keep their own budgets. A reservation is written (and committed) before its call is
sent and stays counted at its worst case until settled, so a killed process over-counts, never under-counts.
Without a scope the budget lives in memory for one run (library use, Ray shards).
"""

from __future__ import annotations

import math
import threading
from functools import partial
from typing import Any

from negclean.cascade.pricing import Price
from negclean.cascade.store import JudgmentStore
from negclean.judge.meter import Reservation  # re-exported: it was defined here

#: input tokens are counted with our tokenizer; a provider may count a few more
INPUT_MARGIN = 1.10
INPUT_SLACK = 16


class Budget:
    """The cap and what was spent against it; thread-safe (calls reserve from an event loop thread).

    Args:
        cap: USD; None or infinity is no cap (spend is still counted and persisted).
        store: the judgment store holding the ledger (None: in memory only).
        scope: the ledger's key (e.g. ``run:<output dir>``); None: in memory only.
    """

    def __init__(self, *, cap: float | None, store: JudgmentStore | None = None, scope: str | None = None) -> None:
        self.cap = None if cap is None or math.isinf(cap) else float(cap)
        self.scope = scope
        self._store = store if scope is not None else None
        self.spent_before = store.spent(scope) if store is not None and scope is not None else 0.0
        self._settled = 0.0  # settled in this process
        self._held = 0.0  # reserved and not yet settled
        self._lock = threading.Lock()
        #: why the first call was refused (None while every call fit)
        self.refused: str | None = None

    @property
    def spent(self) -> float:
        """Spent so far, this scope's earlier runs included (unsettled reservations not counted)."""
        with self._lock:
            return self.spent_before + self._settled

    @property
    def spent_this_run(self) -> float:
        with self._lock:
            return self._settled

    def meter(self, price: Price, *, stage: str) -> StageMeter:
        """What one stage's judge reserves and settles through."""
        return StageMeter(self, price, stage)

    def reserve(self, amount: float, *, what: str, ref: str | None = None) -> Reservation | None:
        """Hold ``amount`` USD, or None (and no more calls from now on) when it does not fit under the cap."""
        if amount <= 0:
            return Reservation(0.0)
        with self._lock:
            if self.refused is not None:
                return None
            total = self.spent_before + self._settled + self._held
            if self.cap is not None and total + amount > self.cap + 1e-12:
                self.refused = (
                    f"{what} could cost up to ${amount:.6f}, which does not fit under --max-cost "
                    f"${self.cap:.6f} (${total:.6f} spent or held)"
                )
                return None
            self._held += amount
        recorded = None
        store, scope = self._store, self.scope
        if store is not None and scope is not None:  # the ledger has the last word: other processes may spend it
            recorded = store.submit(lambda: store.reserve_spend(scope, amount, ref, cap=self.cap))
        return Reservation(amount, recorded)

    def confirmed(self, reservation: Reservation) -> bool:
        """After its ledger row is written (``reservation.recorded`` done): whether the ledger accepted it. False
        when another process sharing this scope spent the room first: the hold is released and, as for any
        refusal, no call is started from now on."""
        if reservation.recorded is None or reservation.recorded.result() is not None:
            return True
        with self._lock:
            self._held -= reservation.amount
            if self.refused is None:
                self.refused = (
                    f"a call that could cost up to ${reservation.amount:.6f} does not fit under "
                    f"--max-cost ${self.cap:.6f}: other processes of this run spent or hold the rest"
                )
        return False

    def settle(self, reservation: Reservation, cost: float) -> None:
        """Replace a reservation by the call's actual cost (0 for a call that was answered with an error)."""
        if reservation.amount <= 0 and cost <= 0:
            return
        with self._lock:
            self._held -= reservation.amount
            self._settled += cost
        if reservation.recorded is not None and self._store is not None:
            store, recorded = self._store, reservation.recorded
            store.submit(lambda: recorded.result() is not None and store.settle_spend(recorded.result(), cost))

    def settle_earlier(self, ref: str, cost: float) -> bool:
        """Settle a reservation an earlier process made (a batch it submitted); False when none is open."""
        store, scope = self._store, self.scope
        if store is None or scope is None:
            return False
        # submit passes positional arguments only: scope and ref are bound here
        held = store.submit(partial(store.settle_spend, scope=scope, ref=ref), None, cost).result()
        if held is None:
            return False
        with self._lock:
            self.spent_before += cost - held
        return True

    def as_dict(self) -> dict[str, Any]:
        """For summary.json (standard JSON: no cap is null)."""
        return {
            "cap": self.cap,
            "scope": self.scope,
            "spent_before": round(self.spent_before, 6),
            "spent_this_run": round(self.spent_this_run, 6),
            "spent": round(self.spent, 6),
            "refused": self.refused,
        }


class StageMeter:
    """A budget seen through one stage's price: what a judge is handed (``judge(..., budget=meter)``)."""

    def __init__(self, budget: Budget, price: Price, stage: str) -> None:
        self.budget = budget
        self.price = price
        self.stage = stage

    @property
    def free(self) -> bool:
        return self.price.input_per_m == 0 and self.price.output_per_m == 0

    @property
    def refused(self) -> str | None:
        return self.budget.refused

    def worst_case(self, tokens_in: int, max_tokens_out: int) -> float:
        return self.price.cost(math.ceil(tokens_in * INPUT_MARGIN - 1e-9) + INPUT_SLACK, max_tokens_out)

    def reserve(
        self, tokens_in: int, max_tokens_out: int, *, what: str = "the next call", ref: str | None = None
    ) -> Reservation | None:
        """Reserve a call's worst case; None: do not send it (the budget is spent)."""
        if self.free:
            return Reservation(0.0)
        return self.budget.reserve(
            self.worst_case(tokens_in, max_tokens_out), what=f"stage '{self.stage}': {what}", ref=ref
        )

    def confirmed(self, reservation: Reservation) -> bool:
        """See ``Budget.confirmed``: call once the reservation's ledger row is written, before sending."""
        return self.budget.confirmed(reservation)

    def settle(self, reservation: Reservation, tokens_in: int, tokens_out: int) -> None:
        self.budget.settle(reservation, self.price.cost(tokens_in, tokens_out))

    def settle_worst(self, reservation: Reservation) -> None:
        """Count a call at its worst case: it may have been billed, and its usage is unknown."""
        self.budget.settle(reservation, reservation.amount)

    def settle_earlier(self, ref: str, tokens_in: int, tokens_out: int) -> bool:
        return self.budget.settle_earlier(ref, self.price.cost(tokens_in, tokens_out))
