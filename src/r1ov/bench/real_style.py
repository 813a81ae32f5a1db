"""Responses in the shapes real models write, for the scoring benchmark.

MathVista's published testmini outputs (``results/<model>/output_<model>.json`` in
lupantech/MathVista) show what extraction meets in practice: prose that ends in a sentence
stating the value ("Therefore, the distance is 0.11 meters."), bare answers (``12``, ``B``,
``B. 35°``), "The answer is C (40°)", LaTeX with ``$...$`` and boxes inside prose, long
step-by-step solutions full of intermediate numbers, answers in Chinese ("答案：C"), and
closing courtesies after the answer. These are written from those shapes (no text copied),
right or wrong, for any benchmark record.
"""

from __future__ import annotations

import random
from typing import Any

_STEPS = [
    "First, read the values from the figure: the base is {a} and the height is {b}.",
    "The angle at $B$ is ${a}^\\circ$, so the other angle is $180^\\circ - {a}^\\circ - {b}^\\circ$.",
    "Using the formula $A = \\frac{{1}}{{2}} b h$, we get $\\frac{{1}}{{2}} \\times {a} \\times {b} = {c}$.",
    "Adding the two parts gives {a} + {b} = {c}.",
    "The bar for {a} is higher than the bar for {b}, by about {c} units.",
    "Since the triangles are similar, the ratio of the sides is {a}:{b}.",
    "Let $x$ be the unknown length. Then $x^2 = {a}^2 + {b}^2$, so $x = \\sqrt{{{c}}}$.",
    "Counting the objects one by one, there are {a} cubes and {b} spheres.",
]
_COURTESY = [
    "",
    "",
    "\n\nI hope this helps! Let me know if you have any other questions.",
    "\n\nIs there anything else?",
]


def _solution(rng: random.Random, steps: int) -> str:
    lines = []
    for i in range(steps):
        a, b = rng.randint(2, 90), rng.randint(2, 90)
        lines.append(f"{i + 1}. " + rng.choice(_STEPS).format(a=a, b=b, c=a + b))
    return "\n".join(lines)


def _wrong_value(gold: str) -> str:
    try:
        return str(int(gold) + 1)
    except ValueError:
        pass
    try:
        return f"{float(gold) + 0.5:g}"
    except ValueError:
        return gold.replace("2", "3") if "2" in gold else f"{gold}+1"


def response(record: dict[str, Any], rng: random.Random) -> str:
    """One real-style response to ``record``: right about two times in three, in one of the shapes above."""
    options, gold = list(record.get("options") or []), str(record["answer"])
    right = rng.random() < 0.65
    steps = rng.choice([0, 0, 2, 5, 12, 30])  # bare answers, short notes, long solutions
    body = _solution(rng, steps)
    close = rng.choice(_COURTESY)
    if options:
        letters = [chr(65 + i) for i in range(len(options))]
        letter = gold if gold in letters else letters[options.index(gold)] if gold in options else "A"
        if not right:
            letter = letters[(letters.index(letter) + 1) % len(letters)]
        text = options[letters.index(letter)]
        shapes = [
            letter,
            f"{letter}. {text}",
            f"({letter}) {text}",
            f"{body}\n\nSo the answer is {letter} ({text}).{close}",
            f"{body}\n\nThe correct answer is ({letter}) {text}.{close}",
            f"{body}\n\nTherefore, the answer is {text}.",
            f"{body}\n答案：{letter}",
            f"{body}\n\nThe answer is (A) or ({letter}).",  # a hedge
        ]
        return rng.choice(shapes)
    if len(gold) == 1 and gold.isupper():  # a letter gold whose choices sit in the question text
        letter = gold if right else chr(ord("A") + (ord(gold) - ord("A") + 1) % 4)
        return rng.choice([letter, f"{body}\n\nThe answer is {letter}.{close}", f"{body}\n答案：{letter}"])
    value = gold if right else _wrong_value(gold)
    latex = "\\" in value
    shapes = [
        value if not latex else f"${value}$",
        f"{body}\n\nTherefore, the answer is {value}.{close}",
        f"{body}\n\nThus the value is ${value}$.",
        f"{body}\n\nSo we have $x = \\boxed{{{value}}}$.{close}",
        f"{body}\n\nAnswer: {value}",
        f"{body}\n\nThe final answer is {value}" + ("" if latex else " units") + ".",
    ]
    if not latex:
        shapes.append(f"{body}\n\nTherefore, the length is {value} meters.{close}")
        shapes.append(f"{body}\n\nIt could be {value} or {_wrong_value(value)}.")  # a hedge
    return rng.choice(shapes)
