"""A batch sampler that serves one block of rows per epoch, so that positives rotate across epochs.

The training dataset holds ``epochs`` blocks of ``rows_per_epoch`` rows (block ``e`` was built with the
positives and negatives of epoch ``e``). The trainer calls ``set_epoch(e)`` at the start of each epoch;
the sampler then shuffles block ``e`` only (seeded by ``seed + e``) and cuts it into batches.

With ``conflicts`` (bi-encoder with in-batch negatives) a batch avoids two rows of the same query and a
row whose positive is another row's passage (it would be scored as a negative of the other row): such
rows wait for a later batch. The number of batches per epoch stays ``ceil(rows / batch_size)``; rows
that still conflict at the end go where there is room, counted in ``forced``.

Imports torch and sentence-transformers: import this module only inside a training function.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler


class RowKeys:
    """Per dataset row: the query key, the positive key and the keys of all its passages (positive +
    negatives)."""

    def __init__(self, query: Sequence[int], positive: Sequence[int], passages: Sequence[frozenset[int]]):
        self.query = query
        self.positive = positive
        self.passages = passages


class EpochBlockBatchSampler(DefaultBatchSampler):
    """Batches of block ``epoch % epochs`` of the dataset; see the module docstring."""

    def __init__(
        self,
        dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns=None,
        generator=None,
        seed: int = 0,
        *,
        epochs: int = 1,
        keys: RowKeys | None = None,
    ):
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        total = len(dataset)
        if epochs < 1 or total % epochs:
            raise ValueError(f"dataset of {total} rows does not split into {epochs} equal epoch blocks")
        self.epochs = epochs
        self.rows_per_epoch = total // epochs
        self.keys = keys
        self.served: list[int] = []  # the epochs iterated, in order (tests and the training summary read it)
        self.forced = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.rows_per_epoch // self.batch_size
        return math.ceil(self.rows_per_epoch / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        block = self.epoch % self.epochs
        self.served.append(int(self.epoch))
        gen = torch.Generator()
        gen.manual_seed(self.seed + int(self.epoch))
        start = block * self.rows_per_epoch
        order = [start + int(i) for i in torch.randperm(self.rows_per_epoch, generator=gen)]
        batches = self._pack(order) if self.keys is not None else self._cut(order)
        yield from batches[: len(self)]

    def _cut(self, order: list[int]) -> list[list[int]]:
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _pack(self, order: list[int]) -> list[list[int]]:
        keys = self.keys
        assert keys is not None
        n_batches = math.ceil(len(order) / self.batch_size)
        batches: list[list[int]] = []
        pending: list[int] = []
        stream = iter(order)
        exhausted = False
        while len(batches) < n_batches and (pending or not exhausted):
            batch: list[int] = []
            queries: set[int] = set()
            positives: set[int] = set()
            passages: set[int] = set()

            # fits and add are called only within this iteration, on this iteration's sets (B023 does not apply)
            def fits(i: int) -> bool:
                return (
                    keys.query[i] not in queries  # noqa: B023
                    and keys.positive[i] not in passages  # noqa: B023
                    and not (keys.passages[i] & positives)  # noqa: B023
                )

            def add(i: int) -> None:
                batch.append(i)  # noqa: B023
                queries.add(keys.query[i])  # noqa: B023
                positives.add(keys.positive[i])  # noqa: B023
                passages.update(keys.passages[i])  # noqa: B023

            waiting: list[int] = []
            for i in pending:
                if len(batch) < self.batch_size and fits(i):
                    add(i)
                else:
                    waiting.append(i)
            pending = waiting
            while len(batch) < self.batch_size and not exhausted:
                nxt = next(stream, None)
                if nxt is None:
                    exhausted = True
                elif fits(nxt):
                    add(nxt)
                else:
                    pending.append(nxt)
            batches.append(batch)
        leftovers = pending + list(stream)
        for batch in batches:  # rows that conflict everywhere: put them where there is room
            while leftovers and len(batch) < self.batch_size:
                batch.append(leftovers.pop())
                self.forced += 1
        return [b for b in batches if b]


__all__ = ["EpochBlockBatchSampler", "RowKeys"]
