"""A self-contained HTML report: one file, images embedded as base64, inline CSS, no scripts, no network.

Pure rendering: the caller gives the table cells, the text, the plots (PNG files)
and the config; :func:`render_report` returns the page as a string.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["Figure", "ReportContent", "png_data_uri", "render_report", "html_table"]

_CSS = """
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; margin: 24px auto; max-width: 1240px;
       color: #222; line-height: 1.45; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
p.meta { color: #666; margin-top: 0; font-size: 0.9em; }
div.table { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.7em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 3px 4px; text-align: right; white-space: nowrap; }
span.sd { color: #777; font-size: 0.85em; }
th { background: #f0f3f7; }
td:first-child, th:first-child { text-align: left; }
tr.best-single td { background: #fff6d9; }
tr.group-start td { border-top: 2px solid #888; }
td.pos { color: #11772d; } td.neg { color: #b3261e; }
figure { margin: 1em 0 1.6em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 10px; font-size: 0.8em; overflow-x: auto; border: 1px solid #e1e4e8; }
ul.notes li { margin: 0.2em 0; }
dl.methods dt { font-weight: bold; float: left; clear: left; width: 230px; }
dl.methods dd { margin-left: 240px; margin-bottom: 0.2em; }
"""


@dataclass
class Figure:
    """A plot for the report: its PNG file and a caption."""

    path: Path
    caption: str


@dataclass
class ReportContent:
    """What goes into the report page."""

    title: str
    subtitle: str
    header: Sequence[str]
    body: Sequence[Sequence[str]]
    row_classes: Sequence[str] = ()
    notes: Sequence[str] = ()
    methods: Mapping[str, str] = field(default_factory=dict)
    figures: Sequence[Figure] = ()
    config_yaml: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)


def png_data_uri(path: Path) -> str:
    """A ``data:image/png;base64,...`` URI of a PNG file (the page needs no files beside it)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _sign_class(cell: str) -> str:
    if cell.startswith("+") and cell[1:2].isdigit():
        return ' class="pos"'
    if cell.startswith("-") and cell[1:2].isdigit():
        return ' class="neg"'
    return ""


def _cell_html(cell: str) -> str:
    """A cell's text, escaped; the ``± std`` part of ``mean ± std`` in a smaller, grey span."""
    mean, sep, std = cell.partition(" ± ")
    if not sep:
        return html.escape(cell)
    return f'{html.escape(mean)}<span class="sd"> ± {html.escape(std)}</span>'


def html_table(header: Sequence[str], body: Sequence[Sequence[str]], row_classes: Sequence[str] = ()) -> str:
    """An HTML table (scrolls sideways when too wide); gains starting with + or - are coloured."""
    out = ['<div class="table"><table>', "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for i, cells in enumerate(body):
        cls = row_classes[i] if i < len(row_classes) and row_classes[i] else ""
        attr = f' class="{html.escape(cls)}"' if cls else ""
        out.append(f"<tr{attr}>" + "".join(f"<td{_sign_class(c)}>{_cell_html(c)}</td>" for c in cells) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def _figure(fig: Figure) -> str:
    return (f'<figure><img src="{png_data_uri(fig.path)}" alt="{html.escape(fig.caption)}">'
            f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>")


def render_report(content: ReportContent) -> str:
    """The whole page as a string (UTF-8, no external resources)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(content.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(content.title)}</h1>",
        f'<p class="meta">{html.escape(content.subtitle)}</p>',
        "<h2>Results on the unseen test classes</h2>",
        html_table(content.header, content.body, content.row_classes),
    ]
    if content.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in content.notes) + "</ul>")
    if content.methods:
        parts.append("<h2>Methods</h2>")
        parts.append('<dl class="methods">' + "".join(
            f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in content.methods.items()) + "</dl>")
    if content.figures:
        parts.append("<h2>Plots</h2>")
        parts.extend(_figure(f) for f in content.figures)
    parts.append("<h2>Configuration</h2>")
    parts.append(f"<pre>{html.escape(content.config_yaml)}</pre>")
    parts.append("<h2>Environment</h2>")
    parts.append(html_table(["", "version / value"], [[k, v] for k, v in content.environment.items()]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
