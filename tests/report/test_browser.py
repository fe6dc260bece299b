"""The report in a real browser: headless Chromium, driven by Playwright, 1400 px wide. No table is
wider than its container or the page, and every image has loaded.

Chromium is found as RAYTASKAFF_CHROMIUM (a path), else as chromium, chromium-browser,
google-chrome or google-chrome-stable on PATH (Debian: `apt-get install chromium`); without one
the tests skip. Playwright's own browser download is not needed."""

import os
import shutil
import struct

import pytest
from planted_report import FIVE, TEN, default_like

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# no network, no first-run or update work: the page is a local file
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
WIDTH = 1400


def chromium() -> str | None:
    explicit = os.environ.get("RAYTASKAFF_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return next((found for found in map(shutil.which, CHROMIUM_NAMES) if found), None)


pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(chromium() is None, reason="no Chromium binary (apt-get install chromium, or set RAYTASKAFF_CHROMIUM)")]

#: What overflows, as the browser laid it out: the page, each table against its container, and
#: each image (loaded or not).
MEASURE = """() => {
  const heading = (el) => { for (let e = el; e; e = e.previousElementSibling) if (e.tagName === 'H2') return e.textContent; return ''; };
  const tables = [...document.querySelectorAll('table')].map(t => {
    const box = t.parentElement, r = t.getBoundingClientRect(), c = box.getBoundingClientRect();
    return {section: heading(box === document.body ? t : box), table: r.width, tableRight: r.right, tableScroll: t.scrollWidth, tableClient: t.clientWidth,
            container: box.clientWidth, containerRight: c.right, containerScroll: box.scrollWidth};
  });
  const images = [...document.images].map(i => ({alt: i.alt, complete: i.complete, natural: i.naturalWidth,
                                                 right: i.getBoundingClientRect().right}));
  return {pageScroll: document.documentElement.scrollWidth, pageClient: document.documentElement.clientWidth, tables, images};
}"""


def overflowing(layout: dict) -> list[str]:
    """One line per element wider than where it sits."""
    found = [f"page: {layout['pageScroll']} > {layout['pageClient']} px"] if layout["pageScroll"] > layout["pageClient"] else []
    for t in layout["tables"]:
        # a table that scrolls itself (display: block) hides its overflow from its container
        if t["containerScroll"] > t["container"] or t["tableScroll"] > t["tableClient"] or t["tableRight"] > t["containerRight"] + 0.5:
            found.append(f"table in {t['section']!r}: {t['table']:.0f} px in a container of {t['container']} px")
    found += [f"image {i['alt']!r} reaches {i['right']:.0f} px" for i in layout["images"] if i["right"] > layout["pageClient"]]
    return found


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=FLAGS)
        yield launched
        launched.close()


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("tasks", [FIVE, TEN], ids=["5 tasks", "10 tasks"])
def test_the_report_fits_1400_px_and_every_image_loads(browser, tmp_path, tasks):
    summary = default_like(tmp_path, tasks)
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    page.goto((tmp_path / "report" / "index.html").as_uri())  # waits for the load event: images included
    layout = page.evaluate(MEASURE)
    shot = tmp_path / "report-1400.png"
    page.screenshot(path=str(shot), full_page=True)
    assert _png_size(shot)[0] == WIDTH
    assert overflowing(layout) == []
    sections = {t["section"] for t in layout["tables"]}
    assert {"Best partner per target", "Partner ranking per target", "Scorers against the ground truth", "Cost"} <= sections
    # heatmaps of the ground truth and each scorer, the cost plot and the grouping plot
    assert len(layout["images"]) == 1 + len(summary["scorers"]) + 2
    assert [i["alt"] for i in layout["images"] if not (i["complete"] and i["natural"] > 0)] == []
    page.close()


def test_the_check_sees_a_table_too_wide_for_the_page(browser, tmp_path):
    """The same measurement flags a table of unbreakable cells added to the report."""
    default_like(tmp_path)
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    page.goto((tmp_path / "report" / "index.html").as_uri())
    page.evaluate("""() => {
      const box = document.createElement('div'); box.className = 'table';
      box.innerHTML = '<table><tr>' + '<td>unbreakable_cell_contents_x</td>'.repeat(12).replaceAll('_', '') + '</tr></table>';
      const h = document.createElement('h2'); h.textContent = 'Too wide';
      document.body.append(h, box);
    }""")
    assert [line for line in overflowing(page.evaluate(MEASURE)) if "'Too wide'" in line] != []
    page.close()
