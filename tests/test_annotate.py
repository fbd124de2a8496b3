"""`negclean annotate`: the stratified sample, labels in the store, kappa, qrels, and the HTTP API (no browser)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from browser.runs import copy_run, screen_run
from negclean.annotate.agreement import JudgedPair, annotator_agreement, consensus, kappa, qrels_lines
from negclean.annotate.app import AnnotationApp
from negclean.annotate.server import AnnotationServer
from negclean.cascade.store import JudgmentStore


def hand_kappa(x: list[int], y: list[int]) -> float:
    """Cohen's kappa from its definition: (p_o - p_e) / (1 - p_e)."""
    n = len(x)
    po = sum(a == b for a, b in zip(x, y)) / n
    pa, pb = sum(x) / n, sum(y) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return (po - pe) / (1 - pe)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return screen_run(tmp_path_factory.getbasetemp())


@pytest.fixture
def app(run_dir, tmp_path):
    a = AnnotationApp.open(copy_run(run_dir, tmp_path / "run"), per_stratum=6, seed=0)
    yield a
    a.close()


def screen_label(app: AnnotationApp, item) -> int:
    return {"relevant": 1, "not_relevant": 0}[app.sample.pairs[item.key].stages["screen"]]


# -- sample ------------------------------------------------------------------------------------------------
def test_sample_is_stratified_reproducible_and_hides_verdicts(app, run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    screen = next(s for s in summary["cascade"]["stages"] if s["name"] == "screen")
    s = app.sample
    assert s.strata == {"screen: cleared": screen["not_relevant"], "screen: flagged": screen["relevant"]}
    assert s.sampled == {"screen: cleared": 6, "screen: flagged": 6} and len(s.items) == 12
    again = AnnotationApp.open(run_dir, per_stratum=6, seed=0)
    other = AnnotationApp.open(run_dir, per_stratum=6, seed=1)
    try:
        assert [it.id for it in again.sample.items] == [it.id for it in s.items]
        assert {it.id for it in other.sample.items} != {it.id for it in s.items}
    finally:
        again.close()
        other.close()
    # strata are interleaved, and what the page gets says nothing about the judges
    assert len({screen_label(app, it) for it in s.items[:4]}) == 2
    public = app.items("alice")
    assert {tuple(sorted(it)) for it in public["items"]} == {("id", "positives", "query", "text", "title")}
    assert all(set(p) == {"title", "text"} for it in public["items"] for p in it["positives"])
    text = json.dumps(public)
    for word in ("s(q,c)", "not a duplicate", "similarity:", "not_relevant", '"relevant"'):
        assert word not in text


def test_a_larger_stratum_than_the_run_takes_everything(run_dir):
    a = AnnotationApp.open(run_dir, per_stratum=10_000)
    try:
        assert a.sample.sampled == a.sample.strata and len(a.sample.items) == 250
    finally:
        a.close()


# -- labels ------------------------------------------------------------------------------------------------
def test_labels_go_to_the_store_at_once_and_replace_earlier_ones(app):
    first, second = app.sample.items[:2]
    assert app.label("alice", first.id, "relevant")["labeled"] == 1
    assert app.label("alice", second.id, "unsure")["labeled"] == 2
    app.label("alice", first.id, "not_relevant")
    with JudgmentStore(app.run.store_path) as other:  # another connection sees them: they are committed
        got = {k: lab for _, k, lab in other.human_labels("alice")}
    assert got == {first.key: "not_relevant", second.key: "unsure"}
    assert app.items("alice")["labels"] == {first.id: "not_relevant", second.id: "unsure"}
    assert app.items("bob")["labels"] == {}
    with pytest.raises(ValueError, match="label must be one of"):
        app.label("alice", first.id, "maybe")
    with pytest.raises(ValueError, match="annotator name"):
        app.label("  ", first.id, "relevant")
    with pytest.raises(KeyError, match="no item"):
        app.label("alice", "ffffffffffff", "relevant")


def test_agreement_matches_a_hand_computation(app):
    items = app.sample.items[:8]
    truth = [screen_label(app, it) for it in items]
    alice = [1 - t if i in (1, 4) else t for i, t in enumerate(truth)]  # disagrees with the screen twice
    bob = [1 - a if i == 2 else a for i, a in enumerate(alice)]
    for it, a, b in zip(items, alice, bob):
        app.label("alice", it.id, "relevant" if a else "not_relevant")
        app.label("bob", it.id, "relevant" if b else "not_relevant")
    app.label("alice", app.sample.items[8].id, "unsure")  # left out of every kappa
    agree = app.agreement()
    by = {(k["a"], k["b"]): k for k in agree["judges"]}
    assert by[("screen", "alice")]["n"] == 8
    assert by[("screen", "alice")]["kappa"] == pytest.approx(hand_kappa(truth, alice), abs=1e-4)
    assert by[("screen", "bob")]["kappa"] == pytest.approx(hand_kappa(truth, bob), abs=1e-4)
    # in the screen preset the cascade's false negatives are exactly the screen's flags
    assert by[("cascade", "alice")]["kappa"] == by[("screen", "alice")]["kappa"]
    # the duplicate stage cleared everything here: kappa 0 against any labels with both classes
    assert by[("duplicate", "alice")]["kappa"] == 0.0
    between = agree["between_annotators"]
    assert [(k["a"], k["b"], k["n"]) for k in between] == [("alice", "bob", 8)]
    assert between[0]["kappa"] == pytest.approx(hand_kappa(alice, bob), abs=1e-4)
    assert agree["label_counts"]["alice"] == {"relevant": sum(alice), "not_relevant": 8 - sum(alice), "unsure": 1}


def test_kappa_names_the_cases_where_it_is_undefined():
    assert kappa("a", "b", [], []).note == "no items labeled by both"
    same = kappa("a", "b", [1, 1, 1], [1, 1, 1])
    assert same.kappa is None and same.observed == 1.0 and "undefined" in same.note
    assert kappa("a", "b", [1, 0, 1, 0], [1, 0, 1, 0]).kappa == pytest.approx(1.0)
    assert kappa("a", "b", [1, 0, 1, 0], [0, 1, 0, 1]).kappa == pytest.approx(-1.0)


def test_consensus_and_qrels_leave_out_ties_and_unsure():
    k1, k2, k3 = ("q", "p", "1"), ("q", "p", "2"), ("q", "p", "3")
    by = {
        "a": {k1: "relevant", k2: "relevant", k3: "unsure"},
        "b": {k1: "relevant", k2: "not_relevant"},
        "c": {k1: "not_relevant"},
    }
    assert consensus(by) == {k1: "relevant"}  # k2 is a tie, k3 only unsure
    assert [(k.a, k.b, k.n) for k in annotator_agreement(by)] == [("a", "b", 2), ("a", "c", 1), ("b", "c", 1)]
    pairs = {k: JudgedPair(k, ((f"q{i}", f"d{i}"), ("q9", f"d{i}"))) for i, k in enumerate((k1, k2, k3))}
    labels = [(name, k, lab) for name, d in by.items() for k, lab in d.items()]
    assert qrels_lines(pairs, labels) == ["q0\t0\td0\t1", "q9\t0\td0\t1"]
    assert qrels_lines(pairs, labels, annotator="b") == ["q0\t0\td0\t1", "q1\t0\td1\t0", "q9\t0\td0\t1", "q9\t0\td1\t0"]


# -- HTTP API ----------------------------------------------------------------------------------------------
@pytest.fixture
def server(app):
    srv = AnnotationServer(app, port=0)
    srv.start_background()
    yield srv
    srv.shutdown()
    srv.server_close()


def call(url: str, *, data: dict | None = None, ctype: str = "application/json", host: str | None = None):
    req = urllib.request.Request(
        url, data=None if data is None else json.dumps(data).encode(), method="POST" if data is not None else "GET"
    )
    if data is not None:
        req.add_header("Content-Type", ctype)
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_http_api_labels_agreement_and_qrels(server, app):
    url = server.url
    status, page, headers = call(url)
    assert status == 200 and "negclean annotate" in page and headers["Content-Type"].startswith("text/html")
    assert call(url + "app.js")[0] == 200 and call(url + "app.css")[0] == 200
    items = json.loads(call(url + "api/items?annotator=alice")[1])
    first = items["items"][0]
    status, body, _ = call(url + "api/labels", data={"annotator": "alice", "item": first["id"], "label": "relevant"})
    assert status == 200 and json.loads(body)["labeled"] == 1
    assert json.loads(call(url + "api/items?annotator=alice")[1])["labels"] == {first["id"]: "relevant"}
    assert json.loads(call(url + "api/session")[1])["annotators"] == ["alice"]
    status, qrels, headers = call(url + "api/qrels?annotator=alice")
    item = app.sample.item(first["id"])
    assert status == 200 and qrels == f"{item.query_id}\t0\t{item.docid}\t1\n"
    assert "attachment" in headers["Content-Disposition"]
    agree = json.loads(call(url + "api/agreement")[1])
    assert agree["annotators"] == ["alice"] and {s["stratum"] for s in agree["strata"]} == set(app.sample.strata)


def test_http_api_refuses_what_it_should(server):
    url = server.url
    item = json.loads(call(url + "api/items")[1])["items"][0]["id"]
    good = {"annotator": "alice", "item": item, "label": "relevant"}
    assert call(url + "api/labels", data=good, ctype="text/plain")[0] == 415  # a cross-site form cannot do this
    assert call(url + "api/labels", data=good, host="evil.example:80")[0] == 403  # DNS rebinding
    assert call(url + "api/items", host="evil.example")[0] == 403
    assert call(url + "api/labels", data={**good, "label": "yes"})[0] == 400
    assert call(url + "api/labels", data={**good, "item": "000000000000"})[0] == 404
    assert call(url + "api/items?annotator=%20")[0] == 400
    assert call(url + "nothing")[0] == 404
    assert json.loads(call(url + "api/items?annotator=alice")[1])["labels"] == {}


# -- CLI export and the report --------------------------------------------------------------------------------
def test_export_qrels_from_the_cli_and_labels_in_the_report(app, tmp_path):
    from typer.testing import CliRunner

    from negclean.cli.main import app as cli
    from negclean.report.build import build_report

    items = app.sample.items[:4]
    for it, lab in zip(items, ("relevant", "not_relevant", "unsure", "relevant")):
        app.label("alice", it.id, lab)
    out = tmp_path / "qrels.tsv"
    res = CliRunner().invoke(cli, ["annotate", str(app.run.path), "--export", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["lines"] == 3
    want = {f"{it.query_id}\t0\t{it.docid}\t{v}" for it, v in zip([items[0], items[1], items[3]], (1, 0, 1))}
    assert set(out.read_text().splitlines()) == want
    res = CliRunner().invoke(cli, ["annotate", str(app.run.path), "--export", str(out), "--annotator", "!!"])
    assert res.exit_code == 2 and "annotator name" in res.output
    report = build_report(app.run.path, output=tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "agreement" in report.sections and report.human_labels == 4
    assert "Agreement with human labels" in page and "alice 2 relevant" in page
