"""Documents: layouts as HTML, tables as CSV, text-heavy images as OCR + reconstruction."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any

from r1ov.formalize import checks
from r1ov.formalize.base import Formalizer

_TAG = re.compile(r"^[a-z][a-z0-9]*$")


def html_reference(truth: dict[str, Any]) -> str:
    """``{"elements": [{tag, text, box}]}`` -> one HTML document, an element per line."""
    lines = ["<html><body>"]
    for element in truth["elements"]:
        tag = str(element.get("tag", "div")).lower()
        tag = tag if _TAG.match(tag) else "div"
        box = ",".join(str(v) for v in element.get("box", []))
        text = html.escape(str(element.get("text", "")))
        if tag in checks.VOID_ELEMENTS:
            lines.append(f'<{tag} data-box="{box}" alt="{text}">')
        else:
            lines.append(f'<{tag} data-box="{box}">{text}</{tag}>')
    lines.append("</body></html>")
    return "\n".join(lines)


def csv_reference(truth: dict[str, Any]) -> str:
    """``{"columns": [...], "rows": [[...]]}`` -> CSV with a header row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(truth["columns"])
    writer.writerows(truth["rows"])
    return buffer.getvalue().strip()


def ocr_reference(truth: dict[str, Any]) -> str:
    """``{"lines": [...]}`` -> the OCR lines, then a Markdown reconstruction (first line as title)."""
    lines = [str(line) for line in truth["lines"]]
    markdown = [f"# {lines[0]}", *lines[1:]] if lines else []
    return "OCR:\n" + "\n".join(lines) + "\n\nReconstruction:\n" + "\n".join(markdown)


FORMALIZERS = (
    Formalizer("layout", "html", "formalize_layout", checks.html, html_reference),
    Formalizer("table", "csv", "formalize_table", checks.csv_table, csv_reference),
    Formalizer("text", "ocr", "formalize_text", checks.ocr, ocr_reference),
)
