"""The annotation app driven end to end in headless Chromium: keyboard labels, persistence, two annotators,
kappa on the page equal to a hand computation from verdicts.jsonl.

Slow tier. Skips with the reason when Chromium or Playwright is missing (scripts/install-browser.sh installs them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from browser.pw import assert_png, chromium_page, require_browser, screenshot
from browser.runs import copy_run, screen_run
from negclean.annotate.app import AnnotationApp
from negclean.annotate.server import AnnotationServer
from negclean.cascade.store import JudgmentStore

pytestmark = pytest.mark.slow
KEY = {"relevant": "r", "not_relevant": "n", "unsure": "u"}


def hand_kappa(x: list[int], y: list[int]) -> float:
    n = len(x)
    po = sum(a == b for a, b in zip(x, y)) / n
    pa, pb = sum(x) / n, sum(y) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return (po - pe) / (1 - pe)


def truth_from_files(run) -> dict[tuple[str, str], dict]:
    """(query, candidate text) -> the screen stage's label and the cascade's decision, read from the run's files."""
    summary = json.loads((run / "summary.json").read_text())
    rows = [json.loads(line) for line in (run / "verdicts.jsonl").read_text().splitlines()]
    out = {}
    sources = [json.loads(line) for line in Path(summary["input"]).read_text(encoding="utf-8").splitlines()]
    for src, row in zip(sources, rows):
        for i, (text, cand) in enumerate(zip(src["neg"], row["candidates"])):
            screen = next(t["label"] for t in cand["trail"] if t["stage"] == "screen")
            out[(src["query"], text)] = {
                "screen": int(screen == "relevant"),
                "cascade": int(i in row["false_negative_index"]),
            }
    return out


@pytest.fixture
def served(tmp_path_factory, tmp_path):
    require_browser()
    run = copy_run(screen_run(tmp_path_factory.getbasetemp()), tmp_path / "run")
    app = AnnotationApp.open(run, per_stratum=6, seed=0)
    server = AnnotationServer(app, port=0)
    server.start_background()
    yield app, server, truth_from_files(run)
    server.shutdown()
    server.server_close()
    app.close()


def pending_empty(page) -> None:
    page.wait_for_function("JSON.parse(localStorage.getItem('negclean.pending') || '[]').length === 0", timeout=15_000)


def current(page, truth) -> tuple[str, dict]:
    item_id = page.locator(".dot.current").get_attribute("data-item")
    return item_id, truth[(page.locator("#query").inner_text(), page.locator("#candidate").inner_text())]


def test_label_by_keyboard_reload_two_annotators_and_kappa(served, tmp_path):
    app, server, truth = served
    total = len(app.sample.items)
    labels: dict[str, dict[str, str]] = {"alice": {}, "bob": {}}
    judged: dict[str, dict] = {}
    with chromium_page(width=1100, height=860) as page:
        page.goto(server.url)
        page.fill("#annotator-name", "alice")
        page.press("#annotator-name", "Enter")
        page.locator("#label-view").wait_for()
        assert page.locator("#item-counter").inner_text() == f"Item 1 of {total}"
        assert page.locator("#progress").inner_text() == f"0 / {total} labeled"

        # alice labels 8 items by keyboard: the screen's answer, except two flips and one unsure
        for i in range(8):
            item_id, t = current(page, truth)
            judged[item_id] = t
            lab = "unsure" if i == 6 else ("relevant" if t["screen"] != (i in (1, 4)) else "not_relevant")
            page.keyboard.press(KEY[lab])
            labels["alice"][item_id] = lab
            page.wait_for_function(f"document.getElementById('item-counter').textContent === 'Item {i + 2} of {total}'")
        assert {t["screen"] for t in judged.values()} == {0, 1}  # the sample mixes flagged and cleared
        pending_empty(page)
        with JudgmentStore(app.run.store_path) as store:  # saved before any reload
            assert len(list(store.human_labels("alice"))) == 8
        shot = screenshot(page, "annotate", tmp_path)
        assert_png(shot, min_width=1100, min_height=860)

        # reload: the name, the labels and the place are all still there
        page.reload()
        page.locator("#label-view").wait_for()
        assert page.locator("#annotator-shown").inner_text() == "alice"
        assert page.locator("#progress").inner_text() == f"8 / {total} labeled"
        for item_id, lab in labels["alice"].items():
            assert page.locator(f'.dot[data-item="{item_id}"]').get_attribute("data-label") == lab
        assert page.locator("#item-counter").inner_text() == f"Item 9 of {total}"  # where alice left off
        page.keyboard.press("ArrowLeft")
        last = list(labels["alice"].values())[-1]
        assert page.locator("#item-state").inner_text() == "labeled: " + last.replace("_", " ")

        # the server refuses one save: the label waits in localStorage and is retried, not lost
        page.route("**/api/labels", lambda route: route.abort())
        page.keyboard.press("ArrowRight")
        item_id, t = current(page, truth)
        judged[item_id] = t
        page.keyboard.press("n")
        labels["alice"][item_id] = "not_relevant"
        page.wait_for_function("document.getElementById('status').textContent.includes('not saved yet')")
        page.unroute("**/api/labels")
        pending_empty(page)
        with JudgmentStore(app.run.store_path) as store:
            assert {k: v for _, k, v in store.human_labels("alice")}[app.sample.item(item_id).key] == "not_relevant"

        # a second annotator labels the same items, disagreeing with alice once and deciding her unsure item
        page.click("#change-name")
        page.fill("#annotator-name", "bob")
        page.press("#annotator-name", "Enter")
        page.locator("#label-view").wait_for()
        assert page.locator("#progress").inner_text() == f"0 / {total} labeled"
        for n, (item_id, lab) in enumerate(labels["alice"].items()):
            page.click(f'.dot[data-item="{item_id}"]')
            if lab == "unsure":
                lab = "relevant"
            elif n == 2:
                lab = "relevant" if lab == "not_relevant" else "not_relevant"
            page.keyboard.press(KEY[lab])
            labels["bob"][item_id] = lab
        pending_empty(page)

        page.click("#tab-agreement")
        page.locator("#agreement-judges table").wait_for()
        screenshot(page, "annotate-agreement", tmp_path, full_page=True)

        def shown(a: str, b: str, where: str = "#agreement-judges") -> str:
            return page.locator(f'{where} td[data-a="{a}"][data-b="{b}"] .kappa').inner_text()

        def decisive(who: str, judge: str) -> tuple[list[int], list[int]]:
            pairs = [(judged[i][judge], int(lab == "relevant")) for i, lab in labels[who].items() if lab != "unsure"]
            return [p[0] for p in pairs], [p[1] for p in pairs]

        for who in ("alice", "bob"):
            for judge in ("screen", "cascade"):
                x, y = decisive(who, judge)
                assert shown(judge, who) == f"{hand_kappa(x, y):.3f}", (judge, who)
        both = [i for i in labels["alice"] if "unsure" not in (labels["alice"][i], labels["bob"][i])]
        x = [int(labels["alice"][i] == "relevant") for i in both]
        y = [int(labels["bob"][i] == "relevant") for i in both]
        assert shown("alice", "bob", "#agreement-annotators") == f"{hand_kappa(x, y):.3f}"
        n_text = page.locator('#agreement-annotators td[data-a="alice"][data-b="bob"] .n').inner_text()
        assert n_text == f"(n={len(both)})"
