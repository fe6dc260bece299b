"""One document, two renderings: report.md and index.html hold the same sections with the same
table cells, because both are rendered from one list of blocks; and the renderers' own rules."""

import json
from html.parser import HTMLParser

import pandas as pd

from raytaskaff.report.document import (Code, Gallery, Heading, Image, Only, Paragraph, Section, Table, Warnings, fmt, to_html,
                                        to_markdown)
from raytaskaff.report.render import sections


class _Tables(HTMLParser):
    """Each <h2> of a page with the tables under it: {title: [rows]} (header first, a cell's lines
    joined with '; ' as Markdown joins them, <wbr> dropped)."""

    def __init__(self):
        super().__init__()
        self.found, self.title, self.cell, self.row, self.in_title = {}, None, None, None, False

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self.in_title, self.title = True, ""
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = [""]
        elif tag == "br":
            self.cell.append("")

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_title = False
            self.found[self.title] = []
        elif tag in ("td", "th"):
            self.row.append("; ".join(self.cell))
            self.cell = None
        elif tag == "tr":
            self.found[self.title].append(self.row)

    def handle_data(self, data):
        if self.in_title:
            self.title += data
        elif self.cell is not None:
            self.cell[-1] += data


def _markdown_tables(md: str) -> dict[str, list[list[str]]]:
    """{title: rows} of every '## ' section of a Markdown report (header first)."""
    found = {}
    for part in md.split("\n## ")[1:]:
        title, _, body = part.partition("\n")
        lines = [line for line in body.splitlines() if line.startswith("|") and not line.startswith("|---")]
        found[title] = [line[2:-2].split(" | ") for line in lines]
    return found


def test_report_md_and_index_html_hold_the_same_sections_and_cells(default_report):
    out, _ = default_report
    results = out / "results"
    summary = json.loads((results / "evaluation.json").read_text())
    built = sections(summary, pd.read_csv(results / "ground_truth.csv"), pd.read_csv(results / "costs.csv"),
                     pd.read_parquet(results / "runs.parquet"))
    md = _markdown_tables((out / "report" / "report.md").read_text())
    parser = _Tables()
    parser.feed((out / "report" / "index.html").read_text())
    page = parser.found
    titles = [s.title for s in built]
    assert len(titles) >= 12 and "Scorer against scorer" in titles and "Groupings, trained" in titles
    # the sections in the same order in both, figures aside (HTML only; report.md points to them)
    assert [t for t in md if t in titles] == titles == [t for t in page if t in titles]
    for section in built:
        expected = [section.header, *([c if isinstance(c, str) else "; ".join(c) for c in r] for r in section.rows)] \
            if section.header else []
        assert md[section.title] == expected, section.title
        assert page[section.title] == expected, section.title
    assert set(page) - set(titles) == {"Groupings against the baselines", "Cost against accuracy", "Heatmaps ([target][partner])",
                                       "Affinity on a budget: cost against accuracy", "Config"}
    # the warnings: collapsed at the top of the page; listed at the end of report.md, pointed to at its top
    warned = summary["warnings"]
    assert set(md) - set(titles) == {"Heatmaps and cost plot", f"Warnings ({len(warned)})", "Config"}
    text = (out / "report" / "report.md").read_text()
    assert text.index(f"{len(warned)} warning(s) limit these numbers") < text.index("\n## ") < text.index(f"## Warnings ({len(warned)})")
    assert text.split(f"## Warnings ({len(warned)})\n\n", 1)[1].split("\n\n")[0].splitlines() == [f"- {w}" for w in warned]


BLOCKS = [Heading("sweep ", 1, code="a_b"), Paragraph("x < y", "strong"), Warnings(["one", "t<o"]),
          Section("Numbers", ["name", "value", "more"], [["task_a", "1.00", ["line one", "line two"]], ["short"]], "a note"),
          Section("Nothing failed", [], [], "None."), Table(["a"], []),
          Only("html", [Image("plot", "AAAA"), Gallery([Image("p_q", "BBBB")])]), Only("markdown", [Paragraph("see index.html")]),
          Code("key: 1\n", "yaml"), Paragraph("versions", "note")]


def test_markdown_rendering():
    assert to_markdown(BLOCKS) == (
        "# sweep `a_b`\n\n**x < y**\n\n## Warnings (2)\n\n- one\n- t<o\n\n## Numbers\n\na note\n\n"
        "| name | value | more |\n|---|---|---|\n| task_a | 1.00 | line one; line two |\n| short | | |\n\n"
        "## Nothing failed\n\nNone.\n\n| a |\n|---|\n\nsee index.html\n\n```yaml\nkey: 1\n```\n\nversions\n")
    assert to_markdown([Paragraph("h"), Warnings([]), Table(["a"], [["1"]])]) == "h\n\n| a |\n|---|\n| 1 |\n"


def test_html_rendering():
    page = to_html(BLOCKS, "t<")
    assert page.startswith("<!doctype html><html><head><meta charset='utf-8'><title>t&lt;</title><style>")
    body = page.split("<body>", 1)[1]
    assert body == (
        "<h1>sweep <code>a_b</code></h1><p><strong>x &lt; y</strong></p>"
        "<details class='warn'><summary>Warnings (2)</summary><ul><li>one</li><li>t&lt;o</li></ul></details>"
        "<h2>Numbers</h2><p class='note'>a note</p><div class='table'><table><thead><tr><th>name</th><th>value</th>"
        "<th>more</th></tr></thead><tbody><tr><td>task_a</td><td>1.00</td><td>line one<br>line two</td></tr>"
        "<tr><td>short</td><td></td><td></td></tr></tbody></table></div>"
        "<h2>Nothing failed</h2><p class='note'>None.</p>"
        "<div class='table'><table><thead><tr><th>a</th></tr></thead><tbody></tbody></table></div>"
        "<img alt='plot' src='data:image/png;base64,AAAA'>"
        "<div class='figs'><figure><img alt='p_q' src='data:image/png;base64,BBBB'></figure></div>"
        "<pre>key: 1\n</pre><p class='note'>versions</p></body></html>")


def test_a_name_wraps_after_underscores_except_in_the_first_column():
    body = to_html([Table(["seg_sem", "x"], [["seg_sem", "seg_sem"]])], "t").split("<body>", 1)[1]
    assert "<th>seg_<wbr>sem</th>" in body and "<td>seg_sem</td><td>seg_<wbr>sem</td>" in body


def test_numbers_as_cells():
    assert [fmt(None), fmt(float("nan")), fmt(-0.001), fmt(0.125, 3), fmt(2.0, 1), fmt(3), fmt(True)] == \
        ["-", "-", "0.00", "0.125", "2.0", "3", "True"]


def test_an_svg_figure_is_inline_with_its_caption_and_a_png_one_an_img():
    svg = "<svg xmlns='http://www.w3.org/2000/svg' width='10pt'><text>a</text></svg>"
    body = to_html([Gallery([Image("map <1>", svg, "colours span 0 to 1", "svg"), Image("plot", "AAAA")]),
                    Image("alone", "BBBB", "a caption")], "t").split("<body>", 1)[1]
    assert body == ("<div class='figs'><figure class='svg'><svg role='img' aria-label='map &lt;1&gt;' "
                    "xmlns='http://www.w3.org/2000/svg' width='10pt'><text>a</text></svg>"
                    "<figcaption>colours span 0 to 1</figcaption></figure>"
                    "<figure><img alt='plot' src='data:image/png;base64,AAAA'></figure></div>"
                    "<figure><img alt='alone' src='data:image/png;base64,BBBB'><figcaption>a caption</figcaption></figure>"
                    "</body></html>")
    assert to_markdown([Gallery([Image("map", svg, "c", "svg")]), Paragraph("p")]) == "p\n"
