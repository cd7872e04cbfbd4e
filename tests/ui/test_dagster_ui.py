"""End to end through the Dagster UI, as a person would check it: the whole chain materialized for demo-qa
(launched over the UI's GraphQL API), then the lineage page and the mteb_scores page opened in headless Chromium.

    pytest -m ui tests/ui          # or RETRIEVER_UI_TESTS=1; .ci/run does this after `make test`

Screenshots: docs/screenshots/{lineage,mteb_scores}.png and tests/artifacts/ui/ (with the dagster dev log).
"""

import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ui]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
UI_TIMEOUT_MS = 60_000


def ui_number(x: float) -> str:
    """A float as the UI prints float metadata: JavaScript's Number#toString (shortest round-trip digits)."""
    if x == 0:
        return "0"
    if 1e-7 <= abs(x) < 1e21:
        text = format(Decimal(repr(x)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, exponent = repr(x).split("e")
    return f"{mantissa}e{int(exponent):+d}"


def test_ui_number_matches_javascript():
    assert [ui_number(x) for x in (0.06315, 0.9434, 1.0, 0.0, 5e-05, 0.043154761904761904, 1e-08)] == [
        "0.06315", "0.9434", "1", "0", "0.00005", "0.043154761904761904", "1e-8"]


def _save(page, artifacts: Path, name: str) -> None:
    artifacts.mkdir(parents=True, exist_ok=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / name))
    shutil.copyfile(artifacts / name, SCREENSHOTS / name)


def _open(chromium, url: str, width: int, height: int):
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)  # the graph is drawn seconds after the page loads
    page = chromium.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(url, wait_until="load")  # the UI keeps polling: wait on what is shown instead
    return page


def test_lineage_shows_the_six_assets_in_order_with_the_partition_materialized(dagster_ui, chain_run, chromium):
    from playwright.sync_api import expect

    # Wide enough that the graph is drawn with full asset cards (name, partition status) rather than bare names.
    page = _open(chromium, f"{dagster_ui.base}/assets/mteb_scores?view=lineage&lineageScope=upstream&lineageDepth=6",
                 2400, 1000)
    try:
        nodes = {}
        for key in chain_run.assets:
            node = page.locator("svg foreignObject").filter(has=page.get_by_text(key, exact=True))
            expect(node).to_have_count(1)
            expect(node).to_be_visible()
            # what the card says about the dataset partition: the only one, materialized
            expect(node.get_by_text("1 partition", exact=True)).to_be_visible()
            expect(node.get_by_text("100% filled", exact=True)).to_be_visible()
            nodes[key] = node
        page.wait_for_timeout(500)  # let the edges finish drawing before the picture
        _save(page, dagster_ui.artifacts, "lineage.png")
        xs = [nodes[key].get_by_text(key, exact=True).bounding_box()["x"] for key in chain_run.assets]
        assert all(a < b for a, b in zip(xs, xs[1:], strict=False)), dict(zip(chain_run.assets, xs, strict=True))
    except Exception:
        page.screenshot(path=str(dagster_ui.artifacts / "FAILED-lineage.png"))
        raise
    finally:
        page.close()


def test_scores_page_shows_demo_qa_materialized_and_the_ndcg(dagster_ui, chain_run, chromium):
    from playwright.sync_api import expect

    url = f"{dagster_ui.base}/assets/mteb_scores?view=partitions&partition={chain_run.partition}"
    page = _open(chromium, url, 1600, 1200)
    try:
        expect(page.get_by_text("Materialized (1)", exact=True)).to_be_visible()
        expect(page.get_by_text("Missing (0)", exact=True)).to_be_visible()
        expect(page.get_by_text("Failed (0)", exact=True)).to_be_visible()
        # the partition's detail: its name with the Materialized tag, made by our run
        header = page.locator("div").filter(has=page.get_by_text(chain_run.partition, exact=True)).filter(
            has=page.get_by_text("Materialized", exact=True)).last
        expect(header).to_be_visible()
        expect(page.get_by_text(chain_run.run_id[:8], exact=True)).to_be_visible()
        # the metadata row ndcg_at_10 shows the student's nDCG@10 as reported over GraphQL
        row = page.locator("tr").filter(has=page.locator("td:first-child", has_text=re.compile(r"^ndcg_at_10$")))
        expect(row).to_have_count(1)
        expect(row.locator("td").nth(1)).to_have_text(ui_number(chain_run.ndcg_at_10))
        page.wait_for_timeout(500)
        _save(page, dagster_ui.artifacts, "mteb_scores.png")
    except Exception:
        page.screenshot(path=str(dagster_ui.artifacts / "FAILED-mteb_scores.png"))
        raise
    finally:
        page.close()
