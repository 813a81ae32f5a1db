"""The role-play check: does a chain speak of the image, or give away that its writer read a text?

The teacher reasons over the image's formal description and is asked to write as if it saw the
image; the student will see only the image, so a chain that names the description ("according to
the description", "the detected text", "the netlist") teaches it to cite something it never has.
But images show text, code and data too: a document has captions, a screenshot shows HTML, a chart
may have a bar labelled "OCR". Measured on published chains written by models that saw the image
(``docs/benchmarks/role_play.md``), a phrase list alone rejects such normal wording, so the check
has two tiers:

- **breaks**: wording only a reader of a description writes, whatever the image (the description
  or formalization itself, a formal language's name, the label an OCR engine's output carries),
  and the names of the record's *own* formal description's parts (``the CSV data`` for a table
  given as CSV, ``the caption`` or ``the bounding boxes`` for a scene given as boxes and a
  caption, ``the OCR text`` or ``the reconstruction`` for a page given as OCR). Rejected by rule.
- **questions**: the same words where the image may show them (``the caption`` of a document's
  figure, ``the HTML code`` in a screenshot, ``OCR`` on a chart's axis). With a judge, the judge's
  ``role_play`` answer decides (``filtering.stage``); without one, the chain is kept and its
  verdict says no judge was asked.

A description "of" something other than the image is ordinary English ("the options do not match
the description of sagittate leaves", a published multimodal chain) and is not a break; nor is
"the option that matches this description", a chain comparing its own words with the options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# "description"/"formalization" as the thing given, not "the description of <a leaf>".
_NOT_OF_SOMETHING_ELSE = r"(?!\s+of\s+(?!(?:the|this|that)\s+(?:image|figure|picture|diagram|scene|chart|photo)\b))"
_ALWAYS = re.compile(
    r"\b(?:the|this|that|provided|given)\s+(?:formal\s+|textual\s+|image\s+)?(?:description|formali[sz]ation)\b"
    + _NOT_OF_SOMETHING_ELSE
    + r"|\b(?:according to|based on|from|in)\s+the\s+(?:formal\s+|textual\s+|image\s+)?description\b"
    + _NOT_OF_SOMETHING_ELSE
    + r"|\bformal\s+(?:text|description|representation|language)\b"
    # the label MathVista's OCR prompts give an OCR engine's output; 283 of 5,000 published chains
    # written from it say "the detected text", none of 7,657 written by models that saw the image
    + r"|\bdetected\s+text\b"
    + r"|\b(?:netlist|plantuml)\b",
    re.IGNORECASE,
)
# "the option that matches this description": the chain's own words about the image, not a given
# text (six published chains by Gemini-Pro and Qwen-VL-Max on MATH-V say so).
_MATCHED_AGAINST = re.compile(
    r"\b(?:match(?:es|ed|ing)?|fit(?:s|ted|ting)?|meets?|satisf(?:y|ies|ied|ying)|compar(?:e|es|ed|ing))\s+(?:\w+\s+)?$",
    re.IGNORECASE,
)
# "SPICE" as the circuit language; "spice" in lower case is a jar on a kitchen shelf.
_SPICE = re.compile(r"\bSPICE\b")

# Names of a formal description's parts, by the formal language that has them (the formalizers'
# own output: formalize/router.py REGISTRY and the formalize_*.md prompts).
_PARTS: dict[str, re.Pattern[str]] = {
    "csv": re.compile(r"\bthe\s+csv\b", re.IGNORECASE),
    "json": re.compile(r"\bthe\s+json\b", re.IGNORECASE),
    "html": re.compile(r"\bthe\s+html(?:\s+(?:code|markup|source|snippet))?\b", re.IGNORECASE),
    "ocr": re.compile(
        r"\bthe\s+ocr(?:\s+(?:text|section|output|result|lines|words))?\b|\bthe\s+reconstruction\b", re.IGNORECASE
    ),
    "boxes": re.compile(
        r"\bthe\s+captions?\b|\bbounding\s+box(?:es)?\b|\bthe\s+detections?\b|\bthe\s+(?:box|boxes)\s+list\b",
        re.IGNORECASE,
    ),
}
# "OCR" alone is a question whatever the image: a page about OCR, a chart with an "OCR" bar (three
# published chains by models that saw the image) say it as often as a teacher that read OCR output.
_ANY_OCR = re.compile(r"\bocr\b", re.IGNORECASE)
# Which part names are the record's own: a table is given as CSV, a chart or a CLEVR scene as JSON.
_OWN_PARTS = {"csv": ("csv",), "json": ("json",), "ocr": ("ocr",), "boxes": ("boxes",)}


@dataclass(frozen=True)
class Finding:
    kind: Literal["break", "question"]
    phrase: str


def find(reasoning: str, language: str | None) -> Finding | None:
    """The first role-play break in ``reasoning``, else the first phrase a judge should weigh, else None.

    ``language`` is the record's formal language (``formal_language``: csv, json, html, ocr, boxes,
    spice, plantuml, strategy); None when unknown, which makes every part name a question.
    """
    text = reasoning or ""
    for match in (*_ALWAYS.finditer(text), *_SPICE.finditer(text)):
        if "description" in match.group(0).lower() and _MATCHED_AGAINST.search(
            text[max(0, match.start() - 30) : match.start()]
        ):
            continue
        return Finding("break", match.group(0))
    own = _OWN_PARTS.get((language or "").lower(), ())
    for part in own:
        match = _PARTS[part].search(text)
        if match:
            return Finding("break", match.group(0))
    for part, pattern in _PARTS.items():
        if part in own:
            continue
        match = pattern.search(text)
        if match:
            return Finding("question", match.group(0))
    match = _ANY_OCR.search(text)
    return Finding("question", match.group(0)) if match else None
