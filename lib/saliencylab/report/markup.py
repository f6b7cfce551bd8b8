"""One document written twice at once: every call adds the same content as Markdown and as HTML.

Sections of the report write through a `Doc`, so each caption, note, caveat, star and figure
appears in both renderings by construction (the HTML page embeds the figures; the Markdown links
them under figures/).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

from saliencylab.report.tables import Table, to_html, to_markdown


@dataclass
class Doc:
    """Markdown lines, HTML fragments and the PNG figures by file name."""

    md: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)

    def heading(self, level: int, text: str) -> None:
        self.md += [f"{'#' * level} {text}", ""]
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str, css: str = "") -> None:
        self.md += [text, ""]
        attribute = f' class="{css}"' if css else ""
        self.html.append(f"<p{attribute}>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        """A remark in italics: a skipped section, hidden values and why."""
        self.md += [f"*{text}*", ""]
        self.html.append(f'<p class="note"><i>{html.escape(text)}</i></p>')

    def caveat(self, text: str) -> None:
        self.md += [f"> **{text}**", ""]
        self.html.append(f'<p class="caveat"><b>{html.escape(text)}</b></p>')

    def warning(self, title: str, items: list[str]) -> None:
        self.md += [f"> **{title}**", *[f"> - {w}" for w in items], ""]
        listed = "".join(f"<li>{html.escape(w)}</li>" for w in items)
        self.html.append(f'<div class="warning"><b>{html.escape(title)}</b><ul>{listed}</ul></div>')

    def bullets(self, items: list[str], css: str = "small") -> None:
        self.md += [*[f"- {i}" for i in items], ""]
        self.html.append(f'<ul class="{css}">' + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")

    def table(self, table: Table) -> None:
        """The table with its caption above it in both renderings."""
        if table.caption:
            self.md += [table.caption, ""]
            self.html.append(f'<p class="caption">{html.escape(table.caption)}</p>')
        self.md += [to_markdown(table)]
        self.html.append(to_html(table))

    def figure(self, name: str, png: bytes, alt: str) -> None:
        """A PNG figure: linked as figures/<name> in Markdown, embedded in the HTML."""
        self.figures[name] = png
        self.md += [f"![{alt}](figures/{name})", ""]
        data = base64.b64encode(png).decode()
        self.html.append(f'<img id="{html.escape(name)}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')

    def markdown(self) -> str:
        return "\n".join(self.md)

    def page(self, title: str) -> str:
        return HTML_PAGE.format(title=html.escape(title), body="\n".join(self.html))


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
td.best {{ background: #e6f4e6; }}
.warning {{ background: #fde8e8; border: 2px solid #c00; padding: 0.5em 1em; margin: 1em 0; }}
.caveat {{ color: #8a4b00; }}
.caption {{ margin-bottom: 0; }}
.small, .note {{ font-size: 0.85em; color: #555; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
</style></head><body>
{body}
</body></html>
"""
