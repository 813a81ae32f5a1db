"""Parser checks for teacher replies, one per formal language: ``check(text) -> (passed, detail)``.

They are structural, not semantic: they catch refusals, prose, truncation and broken
syntax, which is what goes wrong with real teachers. Replies are checked (and stored)
after :func:`strip_fences`, since chat models like to wrap code in Markdown fences.
"""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from typing import Any

from r1ov.formalize import grammars
from r1ov.formalize.base import Check, CheckResult

_FENCE = re.compile(r"\A\s*```[\w+-]*[ \t]*\n(?P<body>.*?)\n?```\s*\Z", re.DOTALL)


def strip_fences(text: str) -> str:
    """The reply without one surrounding Markdown code fence, trimmed."""
    match = _FENCE.match(text or "")
    return (match.group("body") if match else text or "").strip()


# --------------------------------------------------------------------------- SPICE


def spice(text: str) -> CheckResult:
    """Every line is a comment, directive, continuation or an element line of the SPICE grammar
    (:func:`r1ov.formalize.grammars.spice_line`). As in SPICE, the first line may be a free-text title."""
    elements, first = 0, True
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        is_title, first = first, False
        if line[0] in "*.+;":
            continue
        problem = grammars.spice_line(line)
        if problem and is_title:
            continue
        if problem:
            return False, f"line {number} {problem}: {line[:60]!r}"
        elements += 1
    return (True, f"{elements} elements") if elements else (False, "no SPICE element lines")


# --------------------------------------------------------------------------- PlantUML


def plantuml(text: str) -> CheckResult:
    """``@startuml ... @enduml`` whose every line is a PlantUML statement, with at least one edge
    or activity step (activity diagrams have no arrows between named elements)."""
    start, end = text.find("@startuml"), text.rfind("@enduml")
    if start < 0 or end < 0 or end < start:
        return False, "missing @startuml ... @enduml"
    body = text[start:end].splitlines()[1:]
    edges, steps, bad = grammars.plantuml_body(body)
    if bad is not None:
        return False, f"not a PlantUML statement: {bad[:60]!r}"
    if not edges and not steps:
        return False, "no arrows between elements and no activity steps"
    return True, f"{edges} arrows, {steps} activity steps"


# --------------------------------------------------------------------------- HTML

# The HTML standard's void elements (no end tag); the reference renderer uses the same list.
VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)


class _TagBalance(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.elements = 0
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements += 1
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_ELEMENTS or self.error:
            return
        if not self.stack or self.stack[-1] != tag:
            self.error = f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>"
            return
        self.stack.pop()


def html(text: str) -> CheckResult:
    """Parses, has elements, and every non-void element is closed in order."""
    parser = _TagBalance()
    parser.feed(text)
    parser.close()
    if parser.error:
        return False, f"unbalanced HTML: {parser.error}"
    if parser.stack:
        return False, f"unclosed <{parser.stack[-1]}>"
    return (True, f"{parser.elements} elements") if parser.elements else (False, "no HTML elements")


# --------------------------------------------------------------------------- CSV


def csv_table(text: str) -> CheckResult:
    """A header and at least one row, every row as wide as the header."""
    try:
        rows = [row for row in csv.reader(io.StringIO(text), strict=True) if row]
    except csv.Error as exc:
        return False, f"CSV does not parse: {exc}"
    if len(rows) < 2:
        return False, "CSV needs a header and at least one row"
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        return False, f"inconsistent column counts {sorted(widths)}"
    return True, f"{len(rows) - 1} rows x {len(rows[0])} columns"


# --------------------------------------------------------------------------- JSON


def _load_json(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"JSON does not parse: {exc.msg} at line {exc.lineno}"


def json_object(*required: str, list_key: str | None = None) -> Check:
    """Factory: a JSON object holding ``required`` keys (and a non-empty list under ``list_key``)."""

    def check(text: str) -> CheckResult:
        data, error = _load_json(text)
        if error:
            return False, error
        if not isinstance(data, dict):
            return False, f"expected a JSON object, got {type(data).__name__}"
        missing = [key for key in required if key not in data]
        if missing:
            return False, f"missing keys {missing}"
        if list_key and not (isinstance(data[list_key], list) and data[list_key]):
            return False, f"{list_key!r} must be a non-empty list"
        return True, f"keys {sorted(data)}"

    check.__name__ = f"json_object({', '.join(required)})"
    return check


# --------------------------------------------------------------------------- detector boxes + caption

_CAPTION = re.compile(r"^\s*caption\s*:\s*(?P<caption>.*)$", re.IGNORECASE | re.MULTILINE)


def split_boxes(text: str) -> tuple[str, str]:
    """(JSON part, caption) of a boxes reply; the caption is '' when there is none."""
    match = _CAPTION.search(text)
    if not match:
        return text.strip(), ""
    return text[: match.start()].strip(), text[match.start("caption") :].strip()


def _is_box(box: Any) -> bool:
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)):
        return False
    return box[0] <= box[2] and box[1] <= box[3]


def boxes(text: str) -> CheckResult:
    """A JSON list of ``{label, box}`` objects, then ``Caption: ...``."""
    body, caption = split_boxes(text)
    data, error = _load_json(strip_fences(body))
    if error:
        return False, error
    if not isinstance(data, list) or not data:
        return False, "expected a non-empty JSON list of objects"
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("label"), str) or not item["label"].strip():
            return False, f"object {i} has no label"
        if not _is_box(item.get("box")):
            return False, f"object {i} has no valid [x0, y0, x1, y1] box"
    if not caption:
        return False, "no 'Caption:' line"
    # The caption must speak of the boxed objects: a caption of something else grounds nothing.
    heads = {str(item["label"]).lower().split()[-1] for item in data}
    cited = sorted(h for h in heads if h in caption.lower())
    if not cited:
        return False, f"the caption cites none of the boxed objects ({', '.join(sorted(heads))})"
    return True, f"{len(data)} boxes and a caption citing {', '.join(cited)}"


# --------------------------------------------------------------------------- labelled sections (OCR, strategy)


def labelled_sections(text: str, labels: tuple[str, ...]) -> dict[str, str]:
    """``{label: body}`` for lines starting with ``Label:``; the body runs to the next label."""
    pattern = re.compile(rf"^\s*({'|'.join(map(re.escape, labels))})\s*:[ \t]*", re.IGNORECASE | re.MULTILINE)
    found = list(pattern.finditer(text))
    result: dict[str, str] = {}
    ends = [m.start() for m in found[1:]] + [len(text)] if found else []
    for match, end in zip(found, ends, strict=True):
        result.setdefault(match.group(1).lower(), text[match.end() : end].strip())
    return result


def ocr(text: str) -> CheckResult:
    """An ``OCR:`` section with at least one line of text."""
    parts = labelled_sections(text, ("OCR", "Reconstruction"))
    lines = [line for line in parts.get("ocr", "").splitlines() if line.strip()]
    return (True, f"{len(lines)} OCR lines") if lines else (False, "empty or missing 'OCR:' section")


def strategy(text: str) -> CheckResult:
    """``Facts:`` with at least one fact and a non-empty ``Strategy:``."""
    parts = labelled_sections(text, ("Figure", "Facts", "Strategy"))
    facts = [line for line in parts.get("facts", "").splitlines() if line.strip().lstrip("-* ").strip()]
    if not facts:
        return False, "empty or missing 'Facts:' section"
    if not parts.get("strategy"):
        return False, "empty or missing 'Strategy:' section"
    return True, f"{len(facts)} facts and a strategy"
