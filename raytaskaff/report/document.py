"""One evaluation, two renderings: a document is a list of blocks built once from the numbers,
then written as Markdown (`to_markdown`) or as a self-contained HTML page (`to_html`).

Blocks: `Heading`, `Paragraph`, `Warnings` (one collapsible block), `Table`, `Section` (a heading,
a note and a table: most of a report), `Image` and `Gallery` (base64 PNG or inline SVG), `Code`,
and `Only` (blocks for one of the two renderings: a Markdown file holds no self-contained image,
so it points to index.html instead). Every cell and text is a finished string: formatting numbers (`fmt`) is the builders'
work, so both renderings show the same digits.
"""

from __future__ import annotations

import html
import math
from typing import NamedTuple

#: A table cell: a string, or a list of lines (joined with "; " in Markdown, one per line in HTML).
Cell = str | list[str]


def fmt(value, digits: int = 2) -> str:
    """A number as a cell: `digits` decimals, "-" for a missing or non-finite one, never "-0.00";
    anything else as str()."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        text = f"{value:.{digits}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    return str(value)


class Heading(NamedTuple):
    """A heading; `code` is appended as inline code (the sweep's name in the title)."""
    text: str
    level: int = 2
    code: str = ""


class Paragraph(NamedTuple):
    """kind: "plain", "strong" (the headline) or "note" (explanations, greyed in HTML)."""
    text: str
    kind: str = "plain"


class Warnings(NamedTuple):
    """What limits the numbers, one item each, as one block with their count: collapsed in HTML
    (a <details> whose summary is the count), a heading and a list in Markdown; nothing at all
    when there are none."""
    texts: list[str]


class Table(NamedTuple):
    """A header and rows of cells; a row shorter than the header leaves its last cells empty."""
    header: list[str]
    rows: list[list[Cell]]


class Section(NamedTuple):
    """A part of a report: a heading, then the note (when there is one), then the table (none
    when the header is empty)."""
    title: str
    header: list[str]
    rows: list[list[Cell]]
    note: str = ""


class Image(NamedTuple):
    """A figure (HTML only): `data` is base64 PNG, or SVG markup (`kind` "svg", shown inline at its
    own size: its text stays text, a page's zoom keeps it sharp, and a figure wider than the page
    scrolls in its own box); `caption` under it when given."""
    alt: str
    data: str
    caption: str = ""
    kind: str = "png"


class Gallery(NamedTuple):
    """Images side by side, wrapping (HTML only)."""
    images: list[Image]


class Code(NamedTuple):
    """Preformatted text (the config) in `language`."""
    text: str
    language: str = ""


class Only(NamedTuple):
    """Blocks that only one rendering shows: medium is "markdown" or "html"."""
    medium: str
    blocks: list


Block = Heading | Paragraph | Warnings | Table | Section | Image | Gallery | Code | Only


def _md_table(table: Table) -> str:
    def cell(c: Cell) -> str:
        return "; ".join(c) if isinstance(c, list) else c

    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(map(cell, r)) + " |" + " |" * (len(table.header) - len(r)) for r in table.rows]
    return "\n".join(lines)


def _md_block(block: Block) -> list[str]:
    """The Markdown chunks of one block (blank lines go between chunks)."""
    if isinstance(block, Heading):
        return ["#" * block.level + " " + block.text + (f"`{block.code}`" if block.code else "")]
    if isinstance(block, Paragraph):
        return [f"**{block.text}**" if block.kind == "strong" else block.text]
    if isinstance(block, Warnings):
        return [f"## {_count(block.texts)}", "\n".join(f"- {w}" for w in block.texts)] if block.texts else []
    if isinstance(block, Table):
        return [_md_table(block)]
    if isinstance(block, Section):
        return ([f"## {block.title}"] + ([block.note] if block.note else [])
                + ([_md_table(Table(block.header, block.rows))] if block.header else []))
    if isinstance(block, Code):
        return [f"```{block.language}\n{block.text.rstrip()}\n```"]
    if isinstance(block, Only):
        return [chunk for b in block.blocks for chunk in _md_block(b)] if block.medium == "markdown" else []
    if isinstance(block, (Image, Gallery)):
        return []  # a Markdown file points to index.html for them
    raise TypeError(f"not a block: {block!r}")


def to_markdown(blocks: list[Block]) -> str:
    """The document as Markdown: blocks apart by a blank line, a newline at the end."""
    return "\n\n".join(chunk for block in blocks for chunk in _md_block(block)) + "\n"


def _breakable(text: str) -> str:
    """Escaped text that may wrap after an underscore (task names such as segment_semantic hold
    no space), so that a narrow column wraps a name instead of widening the table."""
    return html.escape(text).replace("_", "_<wbr>")


def _html_table(table: Table) -> str:
    """An HTML table in a container as wide as the page; a cell given as a list of lines shows one
    per line. The first column (a row's name: a task, a scorer) is never broken inside a name."""
    def cell(c: Cell, escape) -> str:
        return "<br>".join(map(escape, c)) if isinstance(c, list) else escape(c)

    head = "".join(f"<th>{_breakable(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c, _breakable if i else html.escape)}</td>" for i, c in enumerate(r))
                   + "<td></td>" * (len(table.header) - len(r)) + "</tr>" for r in table.rows)
    return f"<div class='table'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _count(texts: list[str]) -> str:
    return f"Warnings ({len(texts)})"


def _image(image: Image) -> str:
    """The figure itself (an <img>, or the inline <svg> named by its alt), its caption apart."""
    if image.kind == "svg":
        return image.data.replace("<svg ", f"<svg role='img' aria-label='{html.escape(image.alt)}' ", 1)
    return f"<img alt='{html.escape(image.alt)}' src='data:image/png;base64,{image.data}'>"


def _figure(image: Image) -> str:
    caption = f"<figcaption>{html.escape(image.caption)}</figcaption>" if image.caption else ""
    return f"<figure{' class=' + repr(image.kind) if image.kind != 'png' else ''}>{_image(image)}{caption}</figure>"


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        code = f"<code>{html.escape(block.code)}</code>" if block.code else ""
        return f"<h{block.level}>{html.escape(block.text)}{code}</h{block.level}>"
    if isinstance(block, Paragraph):
        text = html.escape(block.text)
        return {"strong": f"<p><strong>{text}</strong></p>", "note": f"<p class='note'>{text}</p>"}.get(block.kind, f"<p>{text}</p>")
    if isinstance(block, Warnings):
        if not block.texts:
            return ""
        items = "".join(f"<li>{html.escape(w)}</li>" for w in block.texts)
        return f"<details class='warn'><summary>{_count(block.texts)}</summary><ul>{items}</ul></details>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Section):
        return "".join([_html_block(Heading(block.title)), _html_block(Paragraph(block.note, "note")) if block.note else "",
                        _html_table(Table(block.header, block.rows)) if block.header else ""])
    if isinstance(block, Image):
        return _figure(block) if block.caption or block.kind != "png" else _image(block)
    if isinstance(block, Gallery):
        return "<div class='figs'>" + "".join(map(_figure, block.images)) + "</div>"
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Only):
        return "".join(map(_html_block, block.blocks)) if block.medium == "html" else ""
    raise TypeError(f"not a block: {block!r}")


CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
       # a table fits the page: cells wrap (after underscores too, see _breakable); its container
       # scrolls only if a table has more columns than the page can hold at all
       "div.table{max-width:100%;overflow-x:auto;margin:0.5em 0 1.5em}"
       "table{border-collapse:collapse;font-size:0.85em}"
       "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;overflow-wrap:break-word}"
       "th{background:#f2f2f2}.figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}img{max-width:100%;height:auto}"
       # an SVG figure keeps its size (its labels stay legible) and scrolls in its own box if wider than the page
       "figure.svg{max-width:100%;overflow-x:auto}figure.svg svg{display:block}"
       "figcaption{color:#555;font-size:0.8em;max-width:40em}"
       "pre{background:#f6f6f6;padding:1em;overflow:auto}p.note{color:#555;font-size:0.9em}"
       "details.warn{color:#a40;margin:0.5em 0}details.warn summary{cursor:pointer}details.warn ul{font-size:0.9em}details.warn li{margin:0.2em 0}")


def to_html(blocks: list[Block], title: str) -> str:
    """The document as one self-contained HTML page (styles inline, images embedded)."""
    body = "".join(map(_html_block, blocks))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>")
