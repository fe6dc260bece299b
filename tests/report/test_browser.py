"""The report in a real browser: headless Chromium, driven by Playwright, 1400 px wide. No table is
wider than its container or the page, and every image has loaded; at 40 tasks, no table scrolls
sideways, the heatmaps' labels are at least 9 px and the warnings do not push the first table down.

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
    assert {"Best partner per target", "Partner ranking per target", "Scorers against the ground truth", "Cost",
            "Affinity on a budget"} <= sections
    # the cost plot, the frontier plot and the grouping plot; the heatmaps of the ground truth and each scorer are inline SVG
    assert [i["alt"] for i in layout["images"]] == ["grouping plot", "cost plot", "frontier plot"] and len(page.locator("figure.svg svg").all()) == 1 + len(summary["scorers"])
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


#: Every task label of every heatmap as rendered: its font size in CSS px (the SVG text's font
#: size times the scale from the SVG's units to the screen) and its box's shorter side (a label
#: of two or more characters is at least a line high, whichever way it is turned); and each
#: figure's width against its box.
LABELS = """(tasks) => [...document.querySelectorAll('figure.svg')].map(figure => {
  const svg = figure.querySelector('svg');
  const labels = [...svg.querySelectorAll('text')].filter(t => tasks.includes(t.textContent.trim())).map(t => {
    const m = t.getScreenCTM(), box = t.getBoundingClientRect();
    return {text: t.textContent.trim(), px: parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b),
            side: Math.min(box.width, box.height)};
  });
  return {name: svg.getAttribute('aria-label'), labels, scroll: figure.scrollWidth, client: figure.clientWidth};
})"""


def test_a_40_task_report_reads_at_1400_px(browser, forty_report):
    out, summary, _ = forty_report
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    page.goto((out / "report" / "index.html").as_uri())
    layout = page.evaluate(MEASURE)
    assert overflowing(layout) == []  # no table scrolls sideways, nothing is wider than the page
    # the per-target tables grow downward: a row per target
    rows = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('h2')].map(h => {
      let e = h.nextElementSibling; while (e && !e.matches('div.table') && e.tagName !== 'H2') e = e.nextElementSibling;
      return [h.textContent, e && e.matches('div.table') ? e.querySelectorAll('tbody tr').length : 0]; }))""")
    for title in ("Did the single-task networks learn?", "Best partner per target", "Partner ranking per target"):
        assert rows[title] == 40, title
    figures = page.evaluate(LABELS, summary["tasks"])
    assert len(figures) == 1 + len(summary["scorers"])
    for figure in figures:
        assert len(figure["labels"]) == 2 * 40, figure["name"]  # a row and a column label per task
        small = [(l["text"], round(l["px"], 1), round(l["side"], 1)) for l in figure["labels"] if l["px"] < 9 or l["side"] < 9]
        assert small == [], figure["name"]
        assert figure["scroll"] <= figure["client"], figure["name"]  # 40 tasks still fit the page
    # 15 warnings in one collapsed block whose summary counts them; the first table on the first screen
    warnings = page.locator("details.warn")
    assert warnings.count() == 1 and warnings.get_attribute("open") is None
    assert warnings.locator("summary").inner_text() == f"Warnings ({len(summary['warnings'])})" and len(summary["warnings"]) >= 15
    assert warnings.locator("li").count() == len(summary["warnings"])
    assert page.evaluate("document.querySelector('div.table').getBoundingClientRect().top") < 900
    height = page.evaluate("document.documentElement.scrollHeight")
    page.screenshot(path=str(out / "report-40-1400.png"), full_page=True)
    page.close()
    assert height < 20000  # 23,000 px before: tables of one column per target, lines of 39 partners, shrunk heatmaps


def test_the_check_sees_shrunk_labels(browser, forty_report):
    """The same measurement flags heatmaps drawn narrower than their own size."""
    out, summary, _ = forty_report
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    page.goto((out / "report" / "index.html").as_uri())
    page.add_style_tag(content="figure.svg svg{width:400px;height:auto}")
    figures = page.evaluate(LABELS, summary["tasks"])
    assert all(max(label["px"] for label in f["labels"]) < 9 for f in figures)
    page.close()
