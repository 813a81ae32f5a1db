"""The offline teacher's mind: answers the stages' requests from the ground truth of known records.

Records are found by the SHA-256 of their image bytes (classification, formalization),
falling back to a hash of the decoded pixels, and by question text (distillation), with
the formal description breaking ties between records that share a question. Replies are
what a good teacher would write: the type name, the type's reference formalization (the
formalizers' own renderers), a ``<think>`` chain that walks through what the image shows
and ends in the record's answer, and a JSON verdict for judging.

A seeded share of records (``noise``) gets a flawed chain instead, each flaw of a kind the
filter must catch: a wrong answer, a broken format, a repetitive chain, a too-short chain,
a chain that mentions "the description", or one that never refers to the image (for the
judge). The noisy records are chosen per record id and flaw kinds are dealt round-robin,
so the same data and seed always give the same noise.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import json
import re
from collections.abc import Callable
from typing import Any

from PIL import Image, UnidentifiedImageError

from r1ov.data import imaging
from r1ov.formalize.router import REGISTRY, UNKNOWN
from r1ov.scoring import answers
from r1ov.scoring.reasoning import compose, format_question, option_letters, parse
from r1ov.teachers import protocol

Row = dict[str, Any]
DISTILL_FLAWS = ("wrong_answer", "broken_format", "repetitive", "too_short", "mentions_description", "ungrounded")
FORMALIZE_FLAWS = ("refusal",)


class OracleError(ValueError):
    """The request cannot be answered (unknown prompt, unknown image); the server sends 400."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pixel_key(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError):
        return None
    return _sha(f"{rgb.size}".encode() + rgb.tobytes())


def _question_key(text: str) -> str:
    return " ".join(text.split()).lower()


def noise_plan(rows: list[Row], share: float, salt: str, seed: int, kinds: tuple[str, ...]) -> dict[str, str]:
    """``{record id: flaw}`` for ``round(share * n)`` records chosen by a seeded hash of their id."""
    ranked = sorted({r["id"] for r in rows}, key=lambda rid: _sha(f"{seed}:{salt}:{rid}".encode()))
    chosen = ranked[: round(share * len(ranked))]
    return {rid: kinds[i % len(kinds)] for i, rid in enumerate(chosen)}


# --------------------------------------------------------------------------- what the image shows

_PARTS = {"R": "resistor", "C": "capacitor", "L": "inductor", "V": "voltage source", "I": "current source"}


def _circuit(t: Row) -> list[str]:
    return [
        f"There is a {_PARTS.get(str(p['type']).upper(), 'component')} {p['name']} of {p['value']} "
        f"between node {p['nodes'][0]} and node {p['nodes'][1]}."
        for p in t["components"]
    ] + [f"Node {t.get('ground', '0')} is the ground."]


def _flowchart(t: Row) -> list[str]:
    labels = {n["id"]: n["label"] for n in t["nodes"]}
    lines = [f"There is a {n['shape']} box reading '{n['label']}'." for n in t["nodes"]]
    for e in t["edges"]:
        tag = f", marked '{e['label']}'" if e.get("label") else ""
        lines.append(
            f"An arrow leads from '{labels.get(e['src'], e['src'])}' to '{labels.get(e['dst'], e['dst'])}'{tag}."
        )
    return lines


def _layout(t: Row) -> list[str]:
    return [f"The {e.get('tag', 'block')} area reads '{e.get('text', '')}'." for e in t["elements"]]


def _table(t: Row) -> list[str]:
    columns = [str(c) for c in t["columns"]]
    lines = [f"The table has the columns {', '.join(columns)}."]
    for row in t["rows"]:
        cells = ", ".join(f"{c} {v}" for c, v in zip(columns[1:], row[1:], strict=False))
        lines.append(f"The row for {row[0]} shows {cells}.")
    return lines


def _chart(t: Row) -> list[str]:
    lines = [f"This is a {t.get('chart_type', '')} chart titled '{t.get('title', '')}'."]
    for s in t["series"]:
        points = ", ".join(f"{x} at {v}" for x, v in zip(t["x"], s["values"], strict=False))
        lines.append(f"The {s.get('name') or 'plotted'} series has {points}.")
    return lines


def _natural(t: Row) -> list[str]:
    lines = [f"I can see a {o['label']} spanning {o['box'][0]}-{o['box'][2]} across." for o in t["objects"]]
    return [*lines, f"Overall, {t.get('caption', '')}".strip()]


def _text(t: Row) -> list[str]:
    return [f"One line reads '{line}'." for line in t["lines"]]


def _math(t: Row) -> list[str]:
    lines = [f"The figure is a {str(t.get('figure', 'figure')).replace('_', ' ')}."]
    lines += [f"It is marked {name} = {value}." for name, value in t.get("facts", {}).items()]
    return [*lines, f"The idea that fits is {t.get('strategy', '')}."]


def _clevr(t: Row) -> list[str]:
    return [f"There is a {o['size']} {o['color']} {o['material']} {o['shape']}." for o in t["objects"]]


OBSERVERS: dict[str, Callable[[Row], list[str]]] = {
    "circuit": _circuit,
    "flowchart": _flowchart,
    "layout": _layout,
    "table": _table,
    "chart": _chart,
    "natural": _natural,
    "text": _text,
    "math": _math,
    "clevr": _clevr,
}


def observations(row: Row | None, formalization: str) -> list[str]:
    """Sentences about what the image shows: from ground truth, else from the formal text."""
    truth = json.loads(row["ground_truth"]) if row and row.get("ground_truth") else None
    if isinstance(truth, dict) and truth.get("kind") in OBSERVERS:
        try:
            return OBSERVERS[truth["kind"]](truth)
        except (KeyError, IndexError, TypeError):
            pass  # malformed ground truth: read the formal text instead
    lines = [line.strip() for line in formalization.splitlines() if line.strip()][:12]
    return [f"I notice {line}" for line in lines]


# --------------------------------------------------------------------------- answers and flaws


def _option_letter(answer: str, options: list[str]) -> str | None:
    """The letter of one of ``options`` that ``answer`` names; None without options (a chart's
    category may be called "B" without there being a choice B)."""
    letter = answers.choice_letter(answer, options) if options else None
    return letter if letter in option_letters(options) else None


def wrong_answer(answer: str, options: list[str]) -> str:
    """An answer that ``answers.answers_match`` rejects."""
    letter = _option_letter(answer, options)
    if letter:
        letters = option_letters(options)
        return letters[(letters.index(letter) + 1) % len(letters)]
    try:
        value = float(answer) + 1
        return str(int(value)) if value.is_integer() else str(value)
    except ValueError:
        return "none" if answers.normalize_text(answer) != "none" else "all"


def _answer_phrase(answer: str, options: list[str]) -> str:
    letter = _option_letter(answer, options)
    return f"({letter}) {options[option_letters(options).index(letter)]}" if letter else answer


def chain(row: Row | None, formalization: str, flaw: str | None = None, max_observations: int | None = None) -> str:
    """A teacher completion for ``row``: a clean chain, or one with ``flaw``.

    ``max_observations`` keeps the chain short (that many observations, then the answer): a
    tiny model learns the format from short chains, and they fit small completion limits.
    """
    options = list(row.get("options") or []) if row else []
    answer = (row.get("answer") if row else None) or (option_letters(options)[0] if options else "unknown")
    question = row["question"] if row else "the question"
    if flaw == "wrong_answer":
        answer = wrong_answer(answer, options)
    if flaw == "too_short":
        return compose(f"It is {answer}.", answer)
    if flaw == "ungrounded":
        return compose(
            "Let me think this through. I will consider each possibility in turn and weigh which one fits best. "
            "After weighing them, one choice stands out as the most plausible, so I settle on it.",
            answer,
        )
    if max_observations is not None and flaw is None:
        seen = observations(row, formalization)[:max_observations] or ["Let me look at the image carefully."]
        return compose("\n".join([*seen, f"So the answer is {_answer_phrase(answer, options)}."]), answer)
    steps = ["Let me look at the image carefully.", *observations(row, formalization)]
    if flaw == "repetitive":
        steps = [steps[0], *["Let me look at the image again to be sure of what it really shows."] * 30]
    if flaw == "mentions_description":
        steps[0] = "According to the description, the image contains the following."
    steps.append(f"The question asks: {question.strip()}")
    if options:
        lettered = zip(option_letters(options), options, strict=True)
        steps.append("The choices are " + "; ".join(f"({k}) {o}" for k, o in lettered))
    steps.append(f"Putting these together, the answer is {_answer_phrase(answer, options)}.")
    think = "\n".join(steps)
    if flaw == "broken_format":
        return f"<think>\n{think}\n\nSo the final answer is {answer}."
    return compose(think, answer)


# --------------------------------------------------------------------------- judging

_WORD = re.compile(r"[a-z][a-z']{2,}|\d+(?:\.\d+)?")
_COMMON_WORDS = """
    the and for are but not you all any can had her was one our out day get has him his how man new now old see
    two way who boy did its let put say she too use that with have this will your from they know want been good much
    some time very when come here just like long make many more only over such take than them well were what which
    their there these those then into each other about after again also because before being below between both could
    does doing down during even every first found from further given into itself last least little most must next once
    same should since still through under until upon while whose would shows show shown image picture look looks
    think thinking answer question consider possibility possibilities turn weigh weighing fits fit best choice choices
    stands stand plausible settle careful carefully together putting final option options value values read reads"""
_COMMON = frozenset(_COMMON_WORDS.split())
# Words of the formal languages' syntax, which say nothing about the image itself.
_SYNTAX_WORDS = """
    startuml enduml rectangle action decision start end html body data box label caption ocr reconstruction
    figure facts strategy objects shape color size material series chart_type title circuit node nodes"""
_SYNTAX = frozenset(_SYNTAX_WORDS.split())


def _tokens(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def judge(formalization: str, question: str, reasoning: str) -> dict[str, str]:
    """Pass when the chain cites at least two specifics of the image beyond the question's words.

    Option texts count as specifics: naming what the image shows is what grounds a choice. The
    role-play answer is "broken" when the chain names one of the description's own labelled parts
    (``Caption:``, ``OCR:``, ``Reconstruction:``) or the description itself, and "kept" otherwise:
    a stand-in for a reading judge, which does not model telling a caption printed in a document
    from one written about a photo when the description has no such label.
    """
    think = parse(reasoning).think or reasoning
    stem = question.split("\nOptions:", 1)[0]
    specifics = _tokens(formalization) - _tokens(stem) - _COMMON - _SYNTAX
    cited = sorted(specifics & _tokens(think))
    labels = {label.lower() for label in _LABEL.findall(formalization)}
    named = [label for label in labels if re.search(rf"\bthe\s+{re.escape(label)}\b", think, re.IGNORECASE)]
    role_play = "broken" if named or re.search(r"\bthe\s+description\b", think, re.IGNORECASE) else "kept"
    if len(cited) >= min(2, len(specifics)):
        return {"verdict": "pass", "role_play": role_play,
                "reason": f"the steps use what the image shows ({', '.join(cited[:5])})"}  # fmt: skip
    return {
        "verdict": "fail",
        "role_play": role_play,
        "reason": "the steps never refer to anything the image actually shows",
    }


# A labelled part of a formal description: a line that starts "Caption:", "OCR:", "Reconstruction:".
_LABEL = re.compile(r"^([A-Za-z][A-Za-z ]{1,30}):", re.MULTILINE)


# --------------------------------------------------------------------------- the oracle


class Oracle:
    """Answers classify / formalize / distill / judge requests for a set of known records."""

    def __init__(
        self,
        rows: list[Row],
        *,
        noise: float = 0.0,
        formalize_noise: float = 0.0,
        seed: int = 0,
        max_observations: int | None = None,
    ) -> None:
        self.rows = rows
        self.max_observations = max_observations
        self.by_image: dict[str, Row] = {}
        self.by_question: dict[str, list[Row]] = {}
        self._by_pixels: dict[str, Row] | None = None  # built on the first miss by bytes
        for row in rows:
            # A row without a readable image is still reachable by its question.
            with contextlib.suppress(OSError, ValueError):
                self.by_image.setdefault(_sha(imaging.image_bytes(row)), row)
            key = _question_key(format_question(row["question"], row.get("options")))
            self.by_question.setdefault(key, []).append(row)
        self.distill_flaws = noise_plan(rows, noise, "distill", seed, DISTILL_FLAWS)
        self.formalize_flaws = noise_plan(rows, formalize_noise, "formalize", seed, FORMALIZE_FLAWS)
        self._formalizer_by_prompt = {f.prompt: f for f in REGISTRY.values()}

    # ------------------------------------------------------------------ lookups

    def find_by_image(self, data: bytes) -> Row:
        row = self.by_image.get(_sha(data))
        if row is None:
            if self._by_pixels is None:
                self._by_pixels = {}
                for known in self.rows:
                    try:
                        key = _pixel_key(imaging.image_bytes(known))
                    except (OSError, ValueError):
                        key = None
                    if key:
                        self._by_pixels.setdefault(key, known)
            key = _pixel_key(data)
            row = self._by_pixels.get(key) if key else None
        if row is None:
            raise OracleError("the offline teacher knows no record with this image")
        return row

    def find_by_question(self, question: str, text: str) -> Row | None:
        """The record asking ``question``; ties are broken by likeness to the formal ``text``."""
        candidates = self.by_question.get(_question_key(question), [])
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        # Several records ask the same question: the one whose image reads most like this text.
        return max(candidates, key=lambda r: difflib.SequenceMatcher(None, self.reference(r) or "", text).ratio())

    def reference(self, row: Row, image_type: str | None = None) -> str | None:
        """The row's ground truth rendered by its formalizer, or None when unknown."""
        truth = json.loads(row["ground_truth"]) if row.get("ground_truth") else None
        formalizer = REGISTRY.get(image_type or self.image_type(row) or "")
        if not isinstance(truth, dict) or formalizer is None:
            return None
        try:
            return formalizer.reference(truth)
        except (KeyError, IndexError, TypeError, ValueError):
            return None  # ground truth of another type (a misclassified image)

    @staticmethod
    def image_type(row: Row) -> str | None:
        if row["image_type"] != UNKNOWN:
            return row["image_type"]
        truth = json.loads(row["ground_truth"]) if row.get("ground_truth") else {}
        return truth.get("kind") if isinstance(truth, dict) else None

    # ------------------------------------------------------------------ tasks

    def reply(self, messages: protocol.Messages) -> str:
        """The completion text for a request, or OracleError."""
        task = protocol.identify(messages)
        if task is None:
            raise OracleError("the offline teacher does not know this system prompt")
        if task == protocol.CLASSIFY:
            return self._classify(messages)
        if task in self._formalizer_by_prompt:
            return self._formalize(task, messages)
        if task in (protocol.DISTILL, protocol.DISTILL_PLAIN):
            return self._distill(messages)
        if task == protocol.JUDGE:
            return self._judge(messages)
        raise OracleError(f"the offline teacher has no answer for prompt {task!r}")

    def _image(self, messages: protocol.Messages) -> Row:
        images = protocol.user_images(messages)
        if not images:
            raise OracleError("the request holds no data-URL image")
        return self.find_by_image(images[0])

    def _classify(self, messages: protocol.Messages) -> str:
        image_type = self.image_type(self._image(messages))
        if not image_type:
            raise OracleError("the record has neither an image type nor ground truth")
        return image_type

    def _formalize(self, task: str, messages: protocol.Messages) -> str:
        row = self._image(messages)
        formalizer = self._formalizer_by_prompt[task]
        if self.formalize_flaws.get(row["id"]) == "refusal":
            return "I'm sorry, but I can't produce a description of this image."
        text = self.reference(row, formalizer.name)
        if text is None:
            return f"This image does not look like a {formalizer.name} to me."
        return text

    def _distill(self, messages: protocol.Messages) -> str:
        parts = protocol.sections(protocol.user_text(messages))
        question = parts.get("question", ("", {}))[0]
        formalization = parts.get("formal_description", ("", {}))[0]
        row = self.find_by_question(question, formalization)
        flaw = self.distill_flaws.get(row["id"]) if row else None
        if flaw == "broken_format" and "parser_error" in parts:
            flaw = None  # told what was wrong with its format (distill's corrective ask), it complies
        return chain(row, formalization, flaw, self.max_observations)

    def _judge(self, messages: protocol.Messages) -> str:
        parts = protocol.sections(protocol.user_text(messages))
        verdict = judge(
            parts.get("formal_description", ("", {}))[0],
            parts.get("question", ("", {}))[0],
            parts.get("reasoning", ("", {}))[0],
        )
        return json.dumps(verdict)
