"""The requests the data stages send to teachers, built and read back in one place.

A request is an OpenAI chat: a system message holding one prompt file from ``prompts/`` and
a user message holding the record's image (a base64 data URL in an ``image_url`` part) or
its formal description, question and reasoning in tagged sections. The stages build
requests with these helpers; the offline teacher reads them back with the same ones, so
the two can never drift apart.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import cache
from importlib import resources
from typing import Any

from r1ov.scoring.reasoning import format_question

Messages = list[dict[str, Any]]

# Names of the prompt files (without .md) that are not per image type.
CLASSIFY, DISTILL, DISTILL_PLAIN, JUDGE = "classify", "distill", "distill_plain", "judge"

# Every section a request may hold. A record's own text naming one of these tags is escaped,
# so text inside a record can neither close its section nor open a new one: it stays data.
SECTION_NAMES = ("formal_description", "question", "reasoning", "detections", "ocr_words", "parser_error")
_TAG_IN_BODY = re.compile(r"<(/?)(" + "|".join(SECTION_NAMES) + r")\b", re.IGNORECASE)
_ESCAPED_TAG = re.compile(r"&lt;(/?)(" + "|".join(SECTION_NAMES) + r")\b", re.IGNORECASE)
_SECTION = re.compile(r"<(?P<name>[a-z_]+)(?P<attrs>[^<>]*)>\n?(?P<body>.*?)\n?</(?P=name)>", re.DOTALL)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_DATA_URL = re.compile(r"^data:(?P<mime>[\w/+.-]+);base64,(?P<data>.*)$", re.DOTALL)


@cache
def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>.md`` (packaged with the library)."""
    path = resources.files("r1ov.teachers") / "prompts" / f"{name}.md"
    if not path.is_file():
        raise KeyError(f"no prompt file prompts/{name}.md")
    return path.read_text(encoding="utf-8").strip()


@cache
def prompt_names() -> tuple[str, ...]:
    folder = resources.files("r1ov.teachers") / "prompts"
    return tuple(sorted(p.name.removesuffix(".md") for p in folder.iterdir() if p.name.endswith(".md")))


@cache
def _names_by_text() -> dict[str, str]:
    return {load_prompt(name): name for name in prompt_names()}


def identify(messages: Messages) -> str | None:
    """The prompt file a request was built from (by its system message), or None."""
    system = next((m["content"] for m in messages if m.get("role") == "system"), None)
    return _names_by_text().get(system.strip()) if isinstance(system, str) else None


# --------------------------------------------------------------------------- content parts


def image_part(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    encoded = base64.b64encode(data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{encoded}"}}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def escape_body(body: str) -> str:
    """``<question>`` inside a record's text becomes ``&lt;question>``: data, not structure."""
    return _TAG_IN_BODY.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}", body)


def unescape_body(body: str) -> str:
    return _ESCAPED_TAG.sub(lambda m: f"<{m.group(1)}{m.group(2)}", body)


def section(name: str, body: str, **attrs: str) -> str:
    rendered = "".join(f' {key}="{value}"' for key, value in attrs.items())
    return f"<{name}{rendered}>\n{escape_body(body.strip())}\n</{name}>"


def user_text(messages: Messages) -> str:
    """All text of the user turns, joined."""
    texts = []
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(texts)


def user_images(messages: Messages) -> list[bytes]:
    """Decoded bytes of every data-URL image in the user turns (remote URLs are skipped)."""
    images = []
    for message in messages:
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            match = _DATA_URL.match(part.get("image_url", {}).get("url", ""))
            if match:
                try:
                    images.append(base64.b64decode(match.group("data"), validate=False))
                except (binascii.Error, ValueError):
                    continue
    return images


def sections(text: str) -> dict[str, tuple[str, dict[str, str]]]:
    """``{name: (body, attributes)}`` for each top-level tagged section of ``text``."""
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for m in _SECTION.finditer(text):
        # The first section of a name wins: a later one can only come from a follow-up turn.
        found.setdefault(
            m.group("name"), (unescape_body(m.group("body").strip()), dict(_ATTR.findall(m.group("attrs"))))
        )
    return found


# --------------------------------------------------------------------------- requests per task


def correction_messages(messages: Messages, bad_reply: str, problem: str) -> Messages:
    """The follow-up after an unusable reply: the conversation so far, then what was wrong."""
    feedback = section("parser_error", problem) + (
        "\n\nYour reply above could not be used for the reason in <parser_error>. "
        "Answer the original request again, following its format exactly."
    )
    return [*messages, {"role": "assistant", "content": bad_reply}, {"role": "user", "content": feedback}]


def image_messages(prompt: str, image: bytes, mime: str, sections: tuple[str, ...] | list[str] = ()) -> Messages:
    """Classification and formalization: the prompt file, then the image, then any tool output
    (detector boxes, OCR words) as tagged sections."""
    content = [image_part(image, mime), *(text_part(s) for s in sections)]
    return [{"role": "system", "content": load_prompt(prompt)}, {"role": "user", "content": content}]


def distill_messages(
    language: str, formalization: str, question: str, options: list[str] | None, role_play: bool = True
) -> Messages:
    """Distillation: the formal description stands in for the image, then the question."""
    user = "\n\n".join(
        [
            section("formal_description", formalization, language=language),
            section("question", format_question(question, options)),
        ]
    )
    return [
        {"role": "system", "content": load_prompt(DISTILL if role_play else DISTILL_PLAIN)},
        {"role": "user", "content": user},
    ]


def judge_messages(
    language: str, formalization: str, question: str, options: list[str] | None, reasoning: str
) -> Messages:
    """Judging: is the reasoning consistent with what the image (its description) shows?"""
    user = "\n\n".join(
        [
            section("formal_description", formalization, language=language),
            section("question", format_question(question, options)),
            section("reasoning", reasoning),
        ]
    )
    return [{"role": "system", "content": load_prompt(JUDGE)}, {"role": "user", "content": user}]
