"""The role-play check on published chains: how often it rejects a chain written by a model that saw
the image (a false positive, by construction), and how often one written from a text instead.

Two benchmarks publish every model's responses, and both ran models two ways:

- **saw the image**: multimodal models given the image (MathVista testmini: Bard, IDEFICS,
  InstructBLIP, LLaMA-Adapter-V2, LLaVA, LLaVAR, MiniGPT-4, mPLUG-Owl; MATH-V: Gemini-Pro,
  Qwen-VL-Max and InternLM-XComposer2-VL with chain-of-thought). Nothing they write gives away a
  description they never had, so every rejection of one of their chains is a false positive.
- **read a text**: text-only models given OCR output or a caption in place of the image
  (MathVista's ``*_use_ocr`` runs of ChatGPT, Claude and GPT-4; MATH-V's ChatGPT-3.5 with an image
  caption), the situation of r1ov's teacher, which reads a formal description.

MathVista labels each item's image (``metadata.context``); document images, tables and charts are
the images that show text and data, where a phrase list goes wrong. Each context is given the formal
language r1ov's router would give it (:data:`LANGUAGE_OF_CONTEXT`), since which phrases break the
role-play depends on it (``r1ov.filtering.role_play``). MATH-V items are math: ``strategy``.

The files are read from ``R1OV_MATHVISTA_DIR`` / ``R1OV_MATHV_DIR`` (checkouts of the two
repositories) when set, else downloaded once at the pinned commits into ``~/.cache/r1ov/published``.
The baseline is the phrase list the filter used before the two tiers (:data:`PREVIOUS_RULE`), on the
same chains. What this cannot measure here: the judge's own false-positive rate on the chains the
rule passes to it (it needs a real LLM judge); the share of such chains is reported, so that rate
times that share bounds what a judged run adds.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from r1ov.bench.report import Result
from r1ov.filtering import role_play

MATHVISTA = ("lupantech/MathVista", "53d525874bdde205128e6b160b7357a88277d479", "R1OV_MATHVISTA_DIR")
MATHV = ("mathllm/MATH-V", "a1f5cc3add200c0cd080fad463e500f44ef1fb41", "R1OV_MATHV_DIR")

MATHVISTA_SAW = ["bard/output_bard", "idefics/output_idefics_9b_instruct",
                 "instruct_blip2/output_instruct_blip2_vicuna_13b", "llama_adapter_v2/output_llama_adapter_v2",
                 "llava/output_llava_llama_2_13b", "llavar/output_llavar", "minigpt4/output_minigpt4_llama2",
                 "mplugowl/output_mplugowl_7b_ft"]  # fmt: skip
MATHVISTA_READ = ["chatgpt/output_chatgpt_2shot_solution_use_ocr", "claude/output_claude_2shot_solution_use_ocr",
                  "gpt4/output_gpt4_2shot_solution_use_ocr"]  # fmt: skip
MATHV_SAW = ["closed-source/Gemini/Gemini-Pro-CoT", "closed-source/Qwen/Qwen-VL-Max-CoT",
             "open-source/Internlm/InternLM-XComposer2-VL-CoT"]  # fmt: skip
MATHV_READ = ["closed-source/GPT/ChatGPT3.5-CoT (Text+Image Caption)"]

# MathVista's image contexts -> the formal language r1ov's router gives such an image (None: no type fits).
LANGUAGE_OF_CONTEXT = {
    "document image": "ocr", "table": "csv", "bar chart": "json", "pie chart": "json", "line plot": "json",
    "scatter plot": "json", "map chart": "json", "heatmap chart": "json", "radar chart": "json",
    "natural image": "boxes", "abstract scene": "boxes", "synthetic scene": "json",
    "geometry diagram": "strategy", "function plot": "strategy", "puzzle test": "strategy",
}  # fmt: skip
SHOWS_TEXT = {"document image", "table", "bar chart", "pie chart", "line plot", "scatter plot", "map chart"}

# The rule before the two tiers, kept verbatim as the baseline.
PREVIOUS_RULE = re.compile(
    r"\b(?:the|this|that|provided|given)\s+(?:formal\s+|textual\s+|image\s+)?(?:description|formalization|formalisation)\b"
    r"|\b(?:according to|based on|from|in)\s+the\s+(?:formal\s+|textual\s+)?description\b"
    r"|\bformal\s+(?:text|description|representation|language)\b"
    r"|\b(?:netlist|plantuml|spice)\b"
    r"|\bthe\s+(?:csv|json)(?:\s+(?:data|text|object|snippet))?\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Chain:
    run: str
    context: str
    language: str | None
    text: str

    @cached_property
    def kind(self) -> str | None:
        """The role-play check's finding ("break", "question") or None, found once per chain."""
        found = role_play.find(self.text, self.language)
        return found.kind if found else None


def _published(source: tuple[str, str, str], path: str) -> Path:
    repo, commit, variable = source
    if os.environ.get(variable):
        local = Path(os.environ[variable]) / path
        if not local.exists():
            raise FileNotFoundError(f"{local} not found ({variable} should be a checkout of {repo})")
        return local
    cached = Path.home() / ".cache" / "r1ov" / "published" / repo / commit / path
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        url = f"https://raw.githubusercontent.com/{repo}/{commit}/{urllib.request.quote(path)}"
        partial = cached.with_suffix(".partial")
        try:
            with urllib.request.urlopen(url, timeout=120) as response:
                partial.write_bytes(response.read())
        except OSError as exc:  # URLError and timeouts are OSErrors
            raise SystemExit(
                f"cannot download {url} ({exc}); set {variable} to a checkout of {repo} at {commit[:12]}"
            ) from exc
        partial.replace(cached)
    return cached


def _mathvista(runs: list[str]) -> Iterator[Chain]:
    for run in runs:
        items = json.loads(_published(MATHVISTA, f"results/{run}.json").read_text())
        for item in items.values():
            response = item.get("response")
            if isinstance(response, str) and response.strip():
                context = item["metadata"]["context"]
                yield Chain(run, context, LANGUAGE_OF_CONTEXT.get(context), response)


def _mathv(runs: list[str]) -> Iterator[Chain]:
    for run in runs:
        for line in _published(MATHV, f"outputs/{run}.jsonl").read_text().splitlines():
            response = json.loads(line).get("response") if line.strip() else None
            if isinstance(response, str) and response.strip():
                yield Chain(run, "math", "strategy", response)


def _rejected(chain: Chain) -> bool:
    return chain.kind == "break"


def _asked(chain: Chain) -> bool:
    return chain.kind == "question"


def _share(chains: list[Chain], test: Callable[[Chain], bool]) -> float:
    return 100 * sum(1 for chain in chains if test(chain)) / len(chains)


def run() -> list[Result]:
    saw = [*_mathvista(MATHVISTA_SAW), *_mathv(MATHV_SAW)]
    read = [*_mathvista(MATHVISTA_READ), *_mathv(MATHV_READ)]
    shows_text = [chain for chain in saw if chain.context in SHOWS_TEXT]
    previous = lambda chain: bool(PREVIOUS_RULE.search(chain.text))  # noqa: E731
    return [
        Result.absolute(
            f"chains by models that saw a document, table or chart, rejected by the rule ({len(shows_text):,} chains)",
            _share(shows_text, _rejected), "% false positives", 0.1,
            f"the previous phrase list: {_share(shows_text, previous):.3f}%", lower_is_better=True,
        ),
        Result.absolute(
            f"chains by models that saw the image, any image, rejected by the rule ({len(saw):,} chains)",
            _share(saw, _rejected), "% false positives", 0.1,
            f"the previous phrase list: {_share(saw, previous):.3f}%", lower_is_better=True,
        ),
        Result.absolute(
            f"chains by models that saw the image, sent to the judge ({len(saw):,} chains)",
            _share(saw, _asked), "%", None,
            "context: the judge's own false-positive rate on these, times this share, is what a judged run adds",
        ),
        Result.compare(
            f"chains written from OCR text or a caption, rejected by the rule ({len(read):,} chains)",
            _share(read, _rejected), _share(read, previous), "%", 1.0,
            "baseline: the previous phrase list; many of these chains never name their text, so this is not a recall",
        ),
        Result.absolute(
            f"chains written from OCR text or a caption, sent to the judge ({len(read):,} chains)",
            _share(read, _asked), "%", None, "context",
        ),
    ]  # fmt: skip
