"""The report opened in headless Chromium: offline, readable, and its example browser works.

Slow tier. Skips with the reason when Chromium or Playwright is missing (scripts/install-browser.sh installs them).
"""

from __future__ import annotations

import json

import pytest

from browser.pw import assert_png, chromium_page, require_browser, screenshot
from browser.runs import screen_run
from negclean.report.build import build_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    require_browser()
    run = screen_run(tmp_path_factory.getbasetemp())
    out = tmp_path_factory.mktemp("report_browser") / "report.html"
    build_report(run, output=out)
    return out, json.loads((run / "summary.json").read_text())


def test_report_opens_offline_and_shows_its_content(report_file, tmp_path):
    path, summary = report_file
    cas = summary["cascade"]
    with chromium_page(width=1280, height=900) as page:
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
        page.goto(path.as_uri())
        assert page.title() == "negclean report: run_screen"
        assert [u for u in requests if not u.startswith("file:")] == []  # nothing fetched: self-contained

        # the numbers a reader looks for first are visible, in the overview cards
        cards = page.locator(".card").all_inner_texts()
        assert f"{cas['candidates']}\ncandidate negatives" in cards
        assert any(c.startswith(f"{cas['false_negatives']}\nfalse negatives") for c in cards)
        for heading in (
            "Cascade funnel",
            "False-negative rate per source subset",
            "Tokens and cost per stage",
            "Estimated misses (audit sampling)",
            "Examples",
        ):
            assert page.get_by_role("heading", name=heading).is_visible()
        funnel = page.locator("#funnel svg")
        assert funnel.is_visible() and "false negatives (final)" in funnel.text_content()
        box = page.locator("#scores svg").first.bounding_box()
        assert box and box["width"] > 600 and box["height"] > 200  # legible, not a thumbnail

        # the example browser: filter, search, open an example to read each stage's verdict
        examples = page.locator("details.example")
        assert examples.count() == 10
        assert page.locator("#ex-count").inner_text() == "10 of 10 shown"
        with_fn = cas["instances_with_fn"]
        page.select_option("#ex-filter", "fn")
        assert page.locator("#ex-count").inner_text() == f"{with_fn} of 10 shown"
        page.select_option("#ex-filter", "all")
        page.fill("#ex-search", "amber urine")
        assert page.locator("#ex-count").inner_text() == "1 of 10 shown"
        visible = page.locator("details.example:visible")
        visible.locator("summary").click()
        first_fn = visible.locator(".cand.isfn").first
        assert first_fn.is_visible()
        trail = first_fn.locator("ul.trail").inner_text()
        assert "duplicate" in trail and "not relevant" in trail and "screen" in trail and "relevant / better" in trail
        page.fill("#ex-search", "")
        page.evaluate("window.scrollTo(0, 0)")
        end = page.locator("#scores").bounding_box()["y"] - 6  # overview, configuration, funnel, subsets
        shot = screenshot(page, "report", tmp_path, full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": end})
        assert_png(shot, min_width=1280, min_height=1000)
        assert_png(
            screenshot(page, "report-full", tmp_path, publish=False, full_page=True), min_width=1280, min_height=3000
        )
