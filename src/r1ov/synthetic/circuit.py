"""Circuit schematics: a battery driving resistors in series, in parallel, or R1 + (R2 || R3).

Values are drawn from tables of resistances whose combinations are whole ohms and the
voltage is chosen so every current and voltage is a multiple of 0.25, so answers are clean.
Ground truth is the SPICE-like netlist of docs/ground-truth.md; the answers are computed
from the same numbers the netlist holds.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from typing import Any

from PIL import Image, ImageDraw

from r1ov.synthetic.draw import BLACK, WHITE, canvas, fmt, label, make_record, multiple_choice, numeric_distractors

KIND = "circuit"
VALUES = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 60)
WIDTH, HEIGHT = 336, 240
LEFT, RIGHT, TOP, BOTTOM = 40, 270, 60, 190
RUNG_GAP = 66  # room for a two-line label between parallel branches


def _clean(value: Fraction) -> bool:
    """Quarter units at most, so answers read as 1.5 or 0.25, never 0.3333."""
    return (value * 4).denominator == 1


def _parallel(resistances: list[int]) -> Fraction:
    return 1 / sum(Fraction(1, r) for r in resistances)


# Parallel groups whose equivalent resistance is a whole number of ohms.
PARALLEL_SETS = [
    list(c)
    for n in (2, 3)
    for c in itertools.combinations_with_replacement(VALUES, n)
    if _parallel(list(c)).denominator == 1 and _parallel(list(c)) >= 2
]


def _solve(topology: str, rs: list[int], volts: int) -> dict[str, Fraction]:
    """Currents through and voltages across every resistor, plus the totals."""
    if topology == "series":
        total = Fraction(sum(rs))
        current = volts / total
        out = {f"I_R{i + 1}": current for i in range(len(rs))}
        out |= {f"V_R{i + 1}": current * r for i, r in enumerate(rs)}
    elif topology == "parallel":
        total = _parallel(rs)
        out = {f"I_R{i + 1}": Fraction(volts, r) for i, r in enumerate(rs)}
        out |= {f"V_R{i + 1}": Fraction(volts) for i in range(len(rs))}
    else:  # mixed: R1 in series with R2 || R3
        rp = _parallel(rs[1:])
        total = rs[0] + rp
        current = volts / total
        vp = current * rp
        out = {"I_R1": current, "V_R1": current * rs[0], "V_R2": vp, "V_R3": vp}
        out |= {"I_R2": vp / rs[1], "I_R3": vp / rs[2]}
    return out | {"R_total": total, "I_total": volts / total}


def _pick_values(rng: random.Random, topology: str) -> tuple[list[int], int]:
    while True:
        if topology == "series":
            rs = [rng.choice(VALUES[:9]) for _ in range(rng.choice((2, 3)))]
        elif topology == "parallel":
            rs = list(rng.choice(PARALLEL_SETS))
            rng.shuffle(rs)
        else:
            rs = [rng.choice(VALUES[:9]), *rng.choice([s for s in PARALLEL_SETS if len(s) == 2])]
        volts_ok = [v for v in range(3, 61) if all(_clean(x) for x in _solve(topology, rs, v).values())]
        if volts_ok:
            return rs, rng.choice(volts_ok[:6])


def _netlist(topology: str, rs: list[int], volts: int) -> dict[str, Any]:
    components = [{"name": "V1", "type": "V", "nodes": ["1", "0"], "value": f"DC {volts}"}]
    if topology == "series":
        for i, r in enumerate(rs):
            dst = str(i + 2) if i < len(rs) - 1 else "0"
            components.append({"name": f"R{i + 1}", "type": "R", "nodes": [str(i + 1), dst], "value": str(r)})
    elif topology == "parallel":
        components += [
            {"name": f"R{i + 1}", "type": "R", "nodes": ["1", "0"], "value": str(r)} for i, r in enumerate(rs)
        ]
    else:
        components.append({"name": "R1", "type": "R", "nodes": ["1", "2"], "value": str(rs[0])})
        components += [
            {"name": f"R{i + 2}", "type": "R", "nodes": ["2", "0"], "value": str(r)} for i, r in enumerate(rs[1:])
        ]
    return {"kind": KIND, "components": components, "ground": "0"}


# ----------------------------------------------------------------------------- drawing


def _zigzag(draw: ImageDraw.ImageDraw, p0: tuple[int, int], p1: tuple[int, int]) -> None:
    """A resistor symbol between two points on a horizontal or vertical wire."""
    (x0, y0), (x1, y1) = p0, p1
    draw.line([p0, p1], fill=WHITE, width=4)  # cut the wire under the symbol
    horizontal = y0 == y1
    length = (x1 - x0) if horizontal else (y1 - y0)
    lead, teeth, amp = length * 0.15, 6, 6
    points = [p0]
    for i in range(teeth + 1):
        t = lead + (length - 2 * lead) * i / teeth
        offset = 0 if i in (0, teeth) else (amp if i % 2 else -amp)
        points.append((x0 + t, y0 + offset) if horizontal else (x0 + offset, y0 + t))
    points.append(p1)
    draw.line(points, fill=BLACK, width=2)


def _battery(draw: ImageDraw.ImageDraw, volts: int) -> None:
    mid = (TOP + BOTTOM) // 2
    draw.line([(LEFT, mid - 6), (LEFT, mid + 6)], fill=WHITE, width=4)
    draw.line([(LEFT - 13, mid - 5), (LEFT + 13, mid - 5)], fill=BLACK, width=2)  # long plate: +
    draw.line([(LEFT - 7, mid + 5), (LEFT + 7, mid + 5)], fill=BLACK, width=4)
    label(draw, (LEFT - 20, mid - 12), "+", size=12)
    label(draw, (LEFT + 12, mid), f"V1  {volts} V", size=11, anchor="lm")


def _ground(draw: ImageDraw.ImageDraw) -> None:
    x, y = LEFT + 30, BOTTOM
    draw.line([(x, y), (x, y + 12)], fill=BLACK, width=2)
    for i, half in enumerate((10, 6, 2)):
        draw.line([(x - half, y + 12 + 4 * i), (x + half, y + 12 + 4 * i)], fill=BLACK, width=2)


def _rung(draw: ImageDraw.ImageDraw, x: int, name: str, ohms: int) -> None:
    _zigzag(draw, (x, TOP + 25), (x, BOTTOM - 25))
    label(draw, (x + 9, (TOP + BOTTOM) // 2 - 8), name, size=11, anchor="lm")
    label(draw, (x + 9, (TOP + BOTTOM) // 2 + 8), f"{ohms} ohm", size=11, anchor="lm")
    for y in (TOP, BOTTOM):
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=BLACK)


def _render(topology: str, rs: list[int], volts: int) -> Image.Image:
    image, draw = canvas(WIDTH, HEIGHT)
    draw.rectangle([LEFT, TOP, RIGHT, BOTTOM], outline=BLACK, width=2)
    _battery(draw, volts)
    _ground(draw)
    if topology == "series":
        span = (RIGHT - LEFT) / len(rs)
        for i, r in enumerate(rs):
            cx = int(LEFT + span * (i + 0.5))
            _zigzag(draw, (cx - 22, TOP), (cx + 22, TOP))
            label(draw, (cx, TOP - 18), f"R{i + 1}  {r} ohm", size=11)
    elif topology == "parallel":
        xs = [RIGHT - RUNG_GAP * k for k in range(len(rs))][::-1]  # the right wire is the last rung
        for i, (x, r) in enumerate(zip(xs, rs, strict=True)):
            _rung(draw, x, f"R{i + 1}", r)
    else:
        _zigzag(draw, (LEFT + 45, TOP), (LEFT + 105, TOP))
        label(draw, (LEFT + 75, TOP - 18), f"R1  {rs[0]} ohm", size=11)
        for i, (x, r) in enumerate(zip((RIGHT - 75, RIGHT), rs[1:], strict=True)):
            _rung(draw, x, f"R{i + 2}", r)
    return image


# ----------------------------------------------------------------------------- questions

TEMPLATES = {
    "total_resistance": ("What is the total resistance of the circuit, in ohms?", "R_total"),
    "battery_current": ("What current does the battery V1 supply, in amperes?", "I_total"),
    "current_through": ("What is the current through {r}, in amperes?", "I_{r}"),
    "voltage_across": ("What is the voltage across {r}, in volts?", "V_{r}"),
}
DIFFICULTY = {"series": "easy", "parallel": "medium", "mixed": "hard"}


def generate(rng: random.Random, index: int) -> dict[str, Any]:
    """One circuit record drawn from ``rng`` (``index`` is the record's position; unused here)."""
    topology = rng.choice(sorted(DIFFICULTY))
    rs, volts = _pick_values(rng, topology)
    solution = _solve(topology, rs, volts)
    template = rng.choice(sorted(TEMPLATES))
    text, key = TEMPLATES[template]
    resistor = f"R{rng.randrange(len(rs)) + 1}"
    question = text.format(r=resistor)
    answer = fmt(solution[key.format(r=resistor)])
    options = None
    if rng.random() < 0.3:
        options, answer = multiple_choice(rng, answer, numeric_distractors(rng, float(answer)))
    return make_record(
        KIND,
        image=_render(topology, rs, volts),
        question=question,
        answer=answer,
        options=options,
        ground_truth=_netlist(topology, rs, volts),
        difficulty=DIFFICULTY[topology],
        category="Physics",
        template=template,
    )
