"""Budget.settle_earlier: a later process settles, by reference, a reservation an earlier one left open
(a Batch-API file submitted before a crash), through the real SQLite ledger."""

from __future__ import annotations

from negclean.cascade.budget import Budget
from negclean.cascade.store import JudgmentStore


def test_a_later_process_settles_an_earlier_reservation_by_ref(tmp_path):
    path = tmp_path / "judgments.sqlite"
    with JudgmentStore(path) as store:
        first = Budget(cap=1.0, store=store, scope="run-a")
        held = first.reserve(0.25, what="batch file 1", ref="batch-1")
        assert held is not None and held.recorded is not None and held.recorded.result() is not None
        store.flush()

    with JudgmentStore(path) as store:  # the next process: the open reservation counts as spent
        later = Budget(cap=1.0, store=store, scope="run-a")
        assert later.spent_before == 0.25
        assert later.settle_earlier("batch-1", 0.1) is True
        assert later.spent_before == 0.1  # the held 0.25 replaced by the actual cost
        assert store.spent("run-a") == 0.1
        assert later.settle_earlier("batch-1", 0.1) is False  # settled already
        assert later.settle_earlier("no-such-batch", 0.1) is False
