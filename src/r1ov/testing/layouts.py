"""Small benchmark files in each benchmark's published layout, for tests and the scoring bench.

Column names, types and quirks follow the published files (MathVista's HF parquet and repo
JSON with ``query``; MathVerse's testmini parquet with all five versions, the Vision Only
rows' empty ``question`` and a ``Choice:`` row; MathVision with ``<image1>``; WeMath's
testmini JSON; R1-Onevision-Bench's TSV with base64 images). The items are made up: what is
real is the shape a loader must read. ``scale`` repeats the items under fresh ids.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def png(color: str = "white", size: tuple[int, int] = (16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


_MV_HINT = {
    "float1": "Hint: Please answer the question requiring a floating-point number with one decimal place and "
    "provide the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the final value, "
    "e.g., 1, 2, 3, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
    "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
    "choice": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.",
}

# (question, choices, answer, question_type, answer_type, precision, unit, task, hint)
MATHVISTA_ITEMS: list[tuple[Any, ...]] = [
    (
        "What is the length of segment AB?",
        None,
        "1.2",
        "free_form",
        "float",
        1.0,
        None,
        "geometry problem solving",
        "float1",
    ),
    (
        "What fraction of the shape is blue?",
        ["3/11", "8/11", "6/11", "3/5"],
        "8/11",
        "multi_choice",
        "text",
        None,
        None,
        "math word problem",
        "choice",
    ),
    (
        "What is the value of f(0)?",
        None,
        "-3",
        "free_form",
        "integer",
        None,
        None,
        "figure question answering",
        "integer",
    ),
    (
        "How long is the ruler's marked part? (Unit: cm)",
        None,
        "12",
        "free_form",
        "integer",
        None,
        "cm",
        "textbook question answering",
        "integer",
    ),
    (
        "Between which two years does the line peak?",
        None,
        "[2007, 2008]",
        "free_form",
        "list",
        None,
        None,
        "figure question answering",
        "list",
    ),
    (
        "The derivative of f(x) at x=2 is ____ that at x=5",
        ["larger than", "equal to", "smaller than"],
        "equal to",
        "multi_choice",
        "text",
        None,
        None,
        "figure question answering",
        "choice",
    ),
    (
        "Which function is shown?",
        ["an exponential function", "a logarithmic function", "a linear function"],
        "a logarithmic function",
        "multi_choice",
        "text",
        None,
        None,
        "textbook question answering",
        "choice",
    ),
    ("What is the ratio of the areas?", None, "0.25", "free_form", "float", 2.0, None, "math word problem", "float1"),
    (
        "How many people are standing?",
        None,
        "5",
        "free_form",
        "integer",
        None,
        None,
        "visual question answering",
        "integer",
    ),
    (
        "Which letters label the rows?",
        ["R, D, N", "D, N, R", "N, R, D"],
        "R, D, N",
        "multi_choice",
        "text",
        None,
        None,
        "visual question answering",
        "choice",
    ),
]


def _mathvista_query(question: str, choices: list[str] | None, hint: str) -> str:
    lines = [_MV_HINT[hint], f"Question: {question}"]
    if choices:
        lines.append("Choices:\n" + "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(choices)))
    return "\n".join(lines)


def mathvista_rows(scale: int = 1) -> list[dict[str, Any]]:
    rows = []
    for copy in range(scale):
        for i, (question, choices, answer, qtype, atype, precision, unit, task, hint) in enumerate(MATHVISTA_ITEMS):
            pid = str(copy * len(MATHVISTA_ITEMS) + i + 1)
            rows.append(
                {
                    "pid": pid,
                    "question": question,
                    "image": f"images/{pid}.jpg",
                    "decoded_image": {"bytes": png(), "path": f"{pid}.jpg"},
                    "choices": choices,
                    "unit": unit,
                    "precision": precision,
                    "answer": answer,
                    "question_type": qtype,
                    "answer_type": atype,
                    "metadata": {
                        "category": "math-targeted-vqa",
                        "context": "synthetic scene",
                        "grade": "high school",
                        "img_height": 16,
                        "img_width": 16,
                        "language": "english",
                        "skills": ["arithmetic reasoning"],
                        "source": "r1ov-fixture",
                        "split": "testmini",
                        "task": task,
                    },
                    "query": _mathvista_query(question, choices, hint),
                }
            )
    return rows


def write_mathvista_parquet(directory: Path, scale: int = 1) -> Path:
    """``data/testmini-00000-of-00001.parquet`` as on the Hub."""
    path = Path(directory) / "data" / "testmini-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(mathvista_rows(scale)), path)
    return path


def write_mathvista_json(directory: Path) -> Path:
    """The repo's ``data/testmini.json``: keyed by pid, image paths relative to the file."""
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    annotations = {}
    for row in mathvista_rows():
        (directory / row["image"]).write_bytes(png())
        annotations[row["pid"]] = {k: v for k, v in row.items() if k != "decoded_image"}
    path = directory / "testmini.json"
    path.write_text(json.dumps(annotations))
    return path


# (problem_index, question_type, answer, [(version, question)]); Vision Only's question is empty.
_MATHVERSE_PROBLEMS: list[tuple[str, str, str, str, str]] = [
    ("1", "multi-choice", "B", "As shown in the figure, find angle B.", "A:55°\nB:35°\nC:45°\nD:25°"),
    ("2", "free-form", "5", "What is the length of AB?", ""),
    ("3", "multi-choice", "C", "Which expression gives the area?", "A:x^2\nB:2x\nC:\\frac{1}{2}x^2\nD:x"),
]
MATHVERSE_VERSIONS = ("Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only")


def mathverse_rows(scale: int = 1) -> list[dict[str, Any]]:
    rows = []
    index = 0
    for copy in range(scale):
        for problem, qtype, answer, question, choices in _MATHVERSE_PROBLEMS:
            for version in MATHVERSE_VERSIONS:
                index += 1
                if version == "Vision Only":
                    text = ""
                    instruction = "According to the question shown in the image, "
                else:
                    # A few published rows write "Choice:" for "Choices:".
                    label = "Choice" if (problem == "3" and version == "Text Lite") else "Choices"
                    text = question + (f"\n{label}:\n{choices}" if choices else "")
                    instruction = ""
                ask = "provide the correct option letter" if choices else "provide the final answer"
                rows.append(
                    {
                        "sample_index": str(index),
                        "problem_index": str(copy * 100 + int(problem)),
                        "problem_version": version,
                        "question": text,
                        "image": {"bytes": png("gray"), "path": f"images_version_1-4/image_{problem}.png"},
                        "answer": answer,
                        "question_type": qtype,
                        "metadata": {
                            "split": "testmini",
                            "source": "GeoQA",
                            "subject": "Plane Geometry",
                            "subfield": "Angle" if problem == "1" else "Length",
                        },
                        "query_wo": f"{instruction}please directly answer the question and {ask}."
                        + (f"\nQuestion: {text}" if text else ""),
                        "query_cot": f"{instruction}please first conduct reasoning, and then answer the question "
                        f"and {ask}." + (f"\nQuestion: {text}" if text else ""),
                        "question_for_eval": text or question,
                    }
                )
    return rows


def write_mathverse_parquet(directory: Path, scale: int = 1) -> Path:
    path = Path(directory) / "testmini.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(mathverse_rows(scale)), path)
    return path


_MATHVISION_ITEMS = [
    ("<image1> Which shape comes next?", ["A", "B", "C", "D", "E"], "C", 2, "logic"),
    ("How long is x in the figure <image1>?", [], "12", 5, "metric geometry - length"),
    ("<image1> What is the value of the expression shown?", [], "-\\frac{1}{2}", 3, "algebra"),
    ("<image1>\n<image2> Which piece fits?", ["(1)", "(2)", "(3)", "(4)", "(5)"], "B", 1, "combinatorial geometry"),
    ("What is the exact area <image1>?", [], "\\frac{\\sqrt{3}}{2}", 4, "metric geometry - area"),
]


def mathvision_rows(scale: int = 1) -> list[dict[str, Any]]:
    rows = []
    for copy in range(scale):
        for i, (question, options, answer, level, subject) in enumerate(_MATHVISION_ITEMS):
            key = str(copy * len(_MATHVISION_ITEMS) + i + 1)
            rows.append(
                {
                    "id": key,
                    "question": question,
                    "options": options,
                    "image": f"images/{key}.jpg",
                    "decoded_image": {"bytes": png("white"), "path": f"{key}.jpg"},
                    "answer": answer,
                    "solution": None,
                    "level": level,
                    "subject": subject,
                }
            )
    return rows


def write_mathvision_parquet(directory: Path, split: str = "test", scale: int = 1) -> Path:
    path = Path(directory) / "data" / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(mathvision_rows(scale)), path)
    return path


def wemath_rows(scale: int = 1) -> list[dict[str, Any]]:
    """One- two- and three-step problems; parts of a problem share an ``ID``."""
    rows = []
    number = 0
    for copy in range(scale):
        for steps, problem in (("1steps", "1"), ("2steps", "2"), ("3steps", "3")):
            parts = ["1"] if steps == "1steps" else [str(i) for i in range(1, int(steps[0]) + 1)] + ["multi"]
            for part in parts:
                number += 1
                rows.append(
                    {
                        "ID": f"{steps}_{copy * 10 + int(problem)}",
                        "split": "testmini",
                        "knowledge concept": "Area of Circles" if part != "multi" else "Composite",
                        "question": f"Part {part} of problem {problem}: what is the area (  ) m²?",
                        "option": "A. 200.96;B. 3215.36;C. 6280;D. 32;E. No correct answer",
                        "answer": "ABCD"[(number + int(problem)) % 4],
                        "image_path": f"{steps}/image/{problem}-{part}.png",
                        "key": f"{steps}_{part}",
                        "question number": number,
                        "knowledge concept description": "Area of a circle: pi r^2",
                    }
                )
    return rows


def write_wemath_json(directory: Path, scale: int = 1) -> Path:
    path = Path(directory) / "testmini.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wemath_rows(scale)))
    return path


_BENCH_ITEMS = [
    ("Hint: pick one.\nQuestion: how many sides?\nChoices:\n(A) 3\n(B) 4", "['3', '4']", "B", "college", "Mathematics"),
    (
        "Which force acts here?\nA. gravity\nB. friction",
        "{'A': 'gravity', 'B': 'friction'}",
        "A",
        "high school",
        "Physics",
    ),
    (
        "What organ is shown?\nA. heart\nB. lung\nC. liver",
        "['heart', 'lung', 'liver']",
        "A",
        "junior high school",
        "Biology",
    ),
    ("Which gas is produced?\nA. O2\nB. H2\nC. CO2\nD. N2", "['O2', 'H2', 'CO2', 'N2']", "C", "college", "Chemistry"),
    (
        "Which figure continues the pattern?\nA. 1\nB. 2\nC. 3\nD. 4",
        "['1', '2', '3', '4']",
        "D",
        "social test",
        "Deduction",
    ),
]


def r1ov_bench_rows(scale: int = 1) -> list[list[Any]]:
    image = base64.b64encode(png("blue")).decode("ascii")
    rows = []
    for copy in range(scale):
        for i, (question, choices, answer, level, category) in enumerate(_BENCH_ITEMS):
            index = copy * len(_BENCH_ITEMS) + i
            # VLMEvalKit stores a repeated image once; later rows hold the first row's index.
            rows.append([index, image if index == 0 else "0", question, choices, answer, level, category])
    return rows


def write_r1ov_bench_tsv(directory: Path, scale: int = 1) -> Path:
    path = Path(directory) / "R1-Onevision-Bench.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["index", "image", "question", "choices", "answer", "level", "category"])
        writer.writerows(r1ov_bench_rows(scale))
    return path
