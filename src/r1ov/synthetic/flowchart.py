"""Flowcharts: a main column of steps with decisions whose "no" branch leaves to a side step.

The side step then returns to a later step, loops back to an earlier one, or ends the flow.
Edges to the side are routed around the right margin, so no arrow crosses a box.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from PIL import Image

from r1ov.synthetic.draw import BLACK, WHITE, arrow, canvas, label, make_record, multiple_choice

KIND = "flowchart"
WIDTH = HEIGHT = 336
MAIN_X, SIDE_X = 100, 250
BOX_W, BOX_H, DIAMOND_H = 116, 26, 36
SIDE_W = 96

ACTIONS = (
    "Read input", "Validate form", "Send email", "Update record", "Compute total", "Load config",
    "Check stock", "Charge card", "Print receipt", "Save file", "Open session", "Parse data",
    "Ship order", "Build report", "Reserve seat", "Scan ticket", "Resize image", "Sort list",
)  # fmt: skip
SIDE_ACTIONS = (
    "Log error", "Retry request", "Notify user", "Ask again", "Refund", "Escalate",
    "Show warning", "Reorder", "Rollback", "Skip item",
)  # fmt: skip
DECISIONS = ("Valid?", "In stock?", "Paid?", "Found?", "Approved?", "Complete?", "Retry < 3?", "Logged in?")


def _build(rng: random.Random) -> dict[str, Any]:
    """Nodes and edges; node order is main column top to bottom, then side steps."""
    steps = rng.randint(3, 5)
    n_decisions = rng.randint(1, min(2, steps - 1))
    decision_rows = set(rng.sample(range(1, steps), n_decisions))  # never the first step
    actions = iter(rng.sample(ACTIONS, steps))
    decisions = iter(rng.sample(DECISIONS, n_decisions))
    nodes = [{"id": "n0", "label": "Start", "shape": "start"}]
    for row in range(steps):
        shape = "decision" if row in decision_rows else "action"
        nodes.append(
            {"id": f"n{row + 1}", "label": next(decisions if row in decision_rows else actions), "shape": shape}
        )
    nodes.append({"id": f"n{steps + 1}", "label": "End", "shape": "end"})
    main = list(nodes)
    edges = []
    for a, b in itertools.pairwise(main):
        edges.append({"src": a["id"], "dst": b["id"], "label": "yes" if a["shape"] == "decision" else ""})
    side_labels = iter(rng.sample(SIDE_ACTIONS, n_decisions))
    for node in main:
        if node["shape"] != "decision":
            continue
        side = {"id": f"n{len(nodes)}", "label": next(side_labels), "shape": "action"}
        nodes.append(side)
        edges.append({"src": node["id"], "dst": side["id"], "label": "no"})
        # Return to a main action or End, never into a decision row (its side slot is taken).
        targets = [m for m in main if m["shape"] in ("action", "end")]
        edges.append({"src": side["id"], "dst": rng.choice(targets)["id"], "label": ""})
    return {"kind": KIND, "nodes": nodes, "edges": edges}


def _render(chart: dict[str, Any]) -> Image.Image:
    image, draw = canvas(WIDTH, HEIGHT)
    main = []  # the main column: every node up to and including End
    for node in chart["nodes"]:
        main.append(node)
        if node["shape"] == "end":
            break
    step = (HEIGHT - 48) / (len(main) - 1)
    where = {n["id"]: (MAIN_X, int(24 + i * step)) for i, n in enumerate(main)}
    for node in chart["nodes"][len(main) :]:
        source = next(e["src"] for e in chart["edges"] if e["dst"] == node["id"])
        where[node["id"]] = (SIDE_X, where[source][1])
    shapes = {n["id"]: n["shape"] for n in chart["nodes"]}

    def right_edge(node_id: str) -> int:
        x = where[node_id][0]
        return x + (SIDE_W if x == SIDE_X else BOX_W) // 2

    lane = 0
    for edge in chart["edges"]:
        (x0, y0), (x1, y1) = where[edge["src"]], where[edge["dst"]]
        if x0 == x1 == MAIN_X and y1 > y0:  # main column, downwards
            top = DIAMOND_H if shapes[edge["src"]] == "decision" else BOX_H
            arrow(draw, [(x0, y0 + top // 2), (x1, y1 - BOX_H // 2 - (5 if shapes[edge["dst"]] == "decision" else 0))])
            if edge["label"]:
                label(draw, (x0 + 6, (y0 + y1) // 2 + 2), edge["label"], size=10, anchor="lm")
        elif x0 == MAIN_X and x1 == SIDE_X:  # decision "no" branch, to the right
            arrow(draw, [(x0 + BOX_W // 2, y0), (x1 - SIDE_W // 2, y1)])
            label(draw, ((x0 + BOX_W // 2 + x1 - SIDE_W // 2) // 2, y0 - 7), edge["label"], size=10)
        else:  # side step back into the main column, around the right margin
            far = WIDTH - 20 + 8 * lane
            lane += 1
            arrow(draw, [(right_edge(edge["src"]), y0), (far, y0), (far, y1), (right_edge(edge["dst"]), y1)])
    for node in chart["nodes"]:
        x, y = where[node["id"]]
        width = SIDE_W if x == SIDE_X else BOX_W
        box = [x - width // 2, y - BOX_H // 2, x + width // 2, y + BOX_H // 2]
        if node["shape"] in ("start", "end"):
            draw.rounded_rectangle(box, radius=BOX_H // 2, fill=(214, 234, 214), outline=BLACK, width=2)
        elif node["shape"] == "decision":
            h = DIAMOND_H // 2
            draw.polygon([(x, y - h), (x + width // 2, y), (x, y + h), (x - width // 2, y)], fill=(250, 236, 200))
            draw.polygon([(x, y - h), (x + width // 2, y), (x, y + h), (x - width // 2, y)], outline=BLACK, width=2)
        else:
            draw.rectangle(box, fill=WHITE if x == MAIN_X else (226, 236, 250), outline=BLACK, width=2)
        label(draw, (x, y), node["label"], size=11)
    return image


# ----------------------------------------------------------------------------- questions


def _labels(chart: dict[str, Any]) -> dict[str, str]:
    return {n["id"]: n["label"] for n in chart["nodes"]}


def next_step(rng: random.Random, chart: dict[str, Any]) -> tuple[str, str, list[str] | None]:
    names = _labels(chart)
    outgoing: dict[str, list[str]] = {}
    for edge in chart["edges"]:
        outgoing.setdefault(edge["src"], []).append(edge["dst"])
    source = rng.choice(sorted(src for src, dsts in outgoing.items() if len(dsts) == 1))
    answer = names[outgoing[source][0]]
    question = f"In the flowchart, which step follows '{names[source]}'?"
    if rng.random() < 0.6:
        options, letter = multiple_choice(rng, answer, [v for k, v in names.items() if k != source])
        return question, letter, options
    return question, answer, None


def count_decisions(rng: random.Random, chart: dict[str, Any]) -> tuple[str, str, list[str] | None]:
    count = sum(n["shape"] == "decision" for n in chart["nodes"])
    return "How many decision (diamond) nodes does the flowchart contain?", str(count), None


def count_actions(rng: random.Random, chart: dict[str, Any]) -> tuple[str, str, list[str] | None]:
    count = sum(n["shape"] == "action" for n in chart["nodes"])
    return "How many rectangular action steps does the flowchart contain?", str(count), None


def no_branch(rng: random.Random, chart: dict[str, Any]) -> tuple[str, str, list[str] | None]:
    names = _labels(chart)
    edge = rng.choice([e for e in chart["edges"] if e["label"] == "no"])
    question = f"In the flowchart, which step comes next when the answer to '{names[edge['src']]}' is no?"
    return question, names[edge["dst"]], None


TEMPLATES = {f.__name__: f for f in (next_step, count_decisions, count_actions, no_branch)}


def generate(rng: random.Random, index: int) -> dict[str, Any]:
    chart = _build(rng)
    template = rng.choice(sorted(TEMPLATES))
    question, answer, options = TEMPLATES[template](rng, chart)
    size = len(chart["nodes"])
    return make_record(
        KIND,
        image=_render(chart),
        question=question,
        answer=answer,
        options=options,
        ground_truth=chart,
        difficulty="easy" if size <= 6 else "medium" if size <= 8 else "hard",
        category="Deduction",
        template=template,
    )
