"""``extra_body``: request fields a server understands beyond the Chat Completions core (llama.cpp server's
``repeat_penalty``, vLLM's ``top_k``). They reach the server as they are, they are part of the fingerprint (they
change verdicts), and they cannot replace what the judge sets itself."""

from __future__ import annotations

import pytest

pytest.importorskip("openai")

from negclean.cascade.stages import CascadeConfig
from negclean.judge.config import OpenAIBatchJudgeConfig, OpenAIJudgeConfig
from negclean.pipeline import run_judge
from negclean.testing.openai_server import OpenAITestServer
from reliability.common import cascade_dict, make_instances, write_jsonl


def test_extra_body_reaches_the_server_and_keys_the_store(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", make_instances(3, 2, seed=5))
    store = str(tmp_path / "s.sqlite")
    with OpenAITestServer() as srv:
        plain = CascadeConfig.model_validate(cascade_dict(srv.base_url))
        extra = CascadeConfig.model_validate(cascade_dict(srv.base_url, extra_body={"repeat_penalty": 1.0, "top_k": 1}))

        def judge(cascade, name):
            run_judge(input_path=str(data), cascade=cascade, output_dir=tmp_path / name, store_path=store)

        judge(plain, "plain")
        first = srv.requests.count
        assert first > 0 and all("repeat_penalty" not in r.body for r in srv.requests.records)
        judge(extra, "extra")  # another fingerprint: judged again, with the fields
        sent = srv.requests.records[first:]
        assert len(sent) == first
        assert all(r.body["repeat_penalty"] == 1.0 and r.body["top_k"] == 1 for r in sent)
        judge(extra, "again")  # same fields: from the store
        assert srv.requests.count == 2 * first


def test_extra_body_changes_the_fingerprint_only_when_set():
    plain = OpenAIJudgeConfig(model="m")
    assert "extra_body" not in plain.canonical()  # stores written before the field existed keep their keys
    assert OpenAIJudgeConfig(model="m", extra_body={"top_k": 1}).fingerprint() != plain.fingerprint()
    batch = OpenAIBatchJudgeConfig(model="m", extra_body={"top_k": 1})
    assert batch.fingerprint() == OpenAIJudgeConfig(model="m", extra_body={"top_k": 1}).fingerprint()


@pytest.mark.parametrize("field", ["max_tokens", "model", "logprobs", "messages"])
def test_extra_body_cannot_replace_what_the_judge_sets(field):
    with pytest.raises(ValueError, match=f"extra_body may not set {field}"):
        OpenAIJudgeConfig(model="m", extra_body={field: 1})
