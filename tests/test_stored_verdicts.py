"""The judge layer's read-only view of a judgment store (negclean.judge.stored) answers as the store does, and
the learned judge's 'prior' feature reads an earlier judge's confidences through it without touching the store."""

from __future__ import annotations

import numpy as np
import pytest

from negclean.cascade.store import JudgmentStore
from negclean.data.records import Instance, Passage
from negclean.errors import ConfigError
from negclean.judge.base import Grade, JudgeTask, Label, TaskResult, Verdict
from negclean.judge.config import LearnedJudgeConfig
from negclean.judge.learned import LearnedJudge
from negclean.judge.learned_features import prior_from_store
from negclean.judge.learned_model import LearnedModel, sigmoid
from negclean.judge.stored import StoredVerdicts

_TEXTS = {
    "the query": [1.0, 0.0],
    "positive text": [0.9, 0.1],
    "neg one": [0.8, 0.6],
    "neg two": [0.1, 1.0],
    "neg three": [0.6, 0.8],
}


class _Table:
    def encode(self, texts, *, prefix="", batch_size=64, show_progress=False):
        return np.stack([np.asarray(_TEXTS[t]) / np.linalg.norm(_TEXTS[t]) for t in texts])


def _instance() -> Instance:
    return Instance(
        "q1",
        "the query",
        (Passage("p", "positive text"),),
        (Passage("a", "neg one"), Passage("b", "neg two"), Passage("c", "neg three")),
    )


def _store_with_an_earlier_judge(path) -> None:
    inst = _instance()
    with JudgmentStore(str(path)) as store:
        store.register_judge("fp-llm", "llm:small", '{"backend": "openai"}')
        store.register_judge("fp-other", "dup", "{}")
        store.put(
            "fp-llm",
            JudgeTask(inst, (0, 1)),
            TaskResult(
                (
                    Verdict(Label.RELEVANT, 0.9, "llm:small", Grade.WORSE, "close", None),
                    Verdict(Label.NOT_RELEVANT, None, "llm:small", None, "off topic", None),
                )
            ),
        )
        store.put("fp-other", JudgeTask(inst, (2,)), TaskResult((Verdict(Label.UNDECIDED, 0.5, "dup"),)))


def test_read_only_view_answers_as_the_store_does(tmp_path):
    path = tmp_path / "judgments.sqlite"
    _store_with_an_earlier_judge(path)
    before = path.read_bytes()
    with JudgmentStore(str(path)) as store:
        want_judges = sorted(store.judges())
        want = {fp: store.verdicts_of(fp) for fp, _, _ in want_judges}
    with StoredVerdicts(path) as view:
        assert sorted(view.judges()) == want_judges and len(want_judges) == 2
        for fp, verdicts in want.items():
            assert view.verdicts_of(fp) == verdicts
        assert prior_from_store(view, "llm:small") == {k: v.confidence for k, v in want["fp-llm"].items()}
        assert sorted(v for v in prior_from_store(view, "fp-llm").values() if v is not None) == [0.9]
        with pytest.raises(
            ConfigError,
            match=r"judge 'nobody' has no verdicts in the store \(judges there: dup, "
            r"llm:small\)",
        ):
            prior_from_store(view, "nobody")
    assert path.read_bytes() == before


def test_learned_judge_reads_its_prior_read_only_and_uses_it(tmp_path):
    path = tmp_path / "judgments.sqlite"
    _store_with_an_earlier_judge(path)
    before = path.read_bytes()
    model = LearnedModel(("s_qc", "prior"), (0.5, 0.4), (0.25, 0.2), (1.5, 2.0), -0.3)
    model_path = model.save(tmp_path / "m.json")
    judge = LearnedJudge(
        LearnedJudgeConfig(path=str(model_path), prior_store=str(path), prior_judge="llm:small"), embedder=_Table()
    )
    probs = judge.probabilities([JudgeTask(_instance(), (0, 1, 2))])[0]
    q = np.asarray(_TEXTS["the query"]) / np.linalg.norm(_TEXTS["the query"])
    s_qc = [float(np.asarray(_TEXTS[t]) @ q / np.linalg.norm(_TEXTS[t])) for t in ("neg one", "neg two", "neg three")]
    # prior: 0.9 for a, None (stored without confidence) and absent for b and c: both take the training mean 0.4
    prior = [0.9, 0.4, 0.4]
    want = sigmoid(np.array([1.5 * (s - 0.5) / 0.25 + 2.0 * (p - 0.4) / 0.2 - 0.3 for s, p in zip(s_qc, prior)]))
    np.testing.assert_allclose(probs, want, rtol=1e-5)
    assert probs[0] > probs[2]  # same-ish similarity, the earlier judge's confidence lifts a
    assert path.read_bytes() == before


def test_a_missing_prior_store_is_named_and_not_created(tmp_path):
    model_path = LearnedModel(("prior",), (0.5,), (0.2,), (1.0,), 0.0).save(tmp_path / "m.json")
    missing = tmp_path / "nowhere" / "judgments.sqlite"
    with pytest.raises(ConfigError, match=r"judgment store .*nowhere/judgments.sqlite not found"):
        LearnedJudge(
            LearnedJudgeConfig(path=str(model_path), prior_store=str(missing), prior_judge="llm:small"),
            embedder=_Table(),
        )
    assert not missing.parent.exists()
