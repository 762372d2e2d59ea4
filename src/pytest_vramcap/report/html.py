"""The HTML run report: one self-contained file, the report's JSON drawn by ``run_report.html``'s script.

No plotting library: the page draws its bars, timelines and strip plots as SVG
with some 300 lines of plain JavaScript, so the file stays small (the data plus
~20 KB), opens offline from a CI artifact and fetches nothing at view time.
"""

from __future__ import annotations

from importlib import resources

from .schema import RunReport

__all__ = ["render_html"]

_PLACEHOLDER = "__VRAMCAP_REPORT__"


def render_html(report: RunReport) -> str:
    template = (resources.files(__package__) / "run_report.html").read_text(encoding="utf-8")
    # Inside <script>, "</script" would close the element early and "<!--" open a comment: no "<" at all
    # (JSON has "<" only inside strings, where \u003c means the same).
    data = report.model_dump_json().replace("<", "\\u003c")
    return template.replace(_PLACEHOLDER, data)
