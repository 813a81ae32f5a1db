"""Text documents (image type ``text``): invoices and notices, one drawn line per OCR line.

Money is handled in whole cents so totals are exact; the ground-truth lines are exactly the
strings drawn, top to bottom, so OCR output can be compared with them line by line.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image

from r1ov.synthetic.draw import BLACK, GRAY, canvas, first_applicable, label, make_record, money

KIND = "text"
WIDTH, HEIGHT = 288, 336
LINE_H = 22

ITEMS = ("Widget", "Notebook", "Cable", "Stapler", "Lamp", "Mug", "Battery", "Folder", "Marker", "Charger")
CUSTOMERS = ("Ann Lee", "Bob Ruiz", "Carla Diaz", "Dev Shah", "Eva Novak", "Farid Aziz", "Hana Sato")
PLACES = ("library", "swimming pool", "museum", "town office", "clinic", "post office")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTHS = ("March", "April", "May", "June", "September", "October")


def _invoice(rng: random.Random) -> dict[str, Any]:
    number = rng.randint(1000, 9999)
    items = []
    for name in rng.sample(ITEMS, rng.randint(2, 4)):
        items.append({"name": name, "qty": rng.randint(1, 4), "unit": rng.choice(range(50, 2000, 25))})
    subtotal = sum(i["qty"] * i["unit"] for i in items)
    tax = (subtotal + 5) // 10  # 10 %, rounded half up to the cent
    lines = [
        f"INVOICE {number}",
        f"Date: 2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        f"Bill to: {rng.choice(CUSTOMERS)}",
        *(f"{i['qty']} x {i['name']} @ {money(i['unit'])} = {money(i['qty'] * i['unit'])}" for i in items),
        f"Subtotal: {money(subtotal)}",
        f"Tax (10%): {money(tax)}",
        f"Total: {money(subtotal + tax)}",
    ]
    facts = {"doc": "invoice", "number": str(number), "items": items, "total": money(subtotal + tax)}
    return {"lines": lines, "facts": facts}


def _notice(rng: random.Random) -> dict[str, Any]:
    place, day = rng.choice(PLACES), rng.choice(DAYS)
    opens, closes = rng.randint(7, 10), rng.randint(16, 20)
    date = f"{day}, {rng.randint(1, 28)} {rng.choice(MONTHS)}"
    lines = [
        "NOTICE",
        f"The {place} will be closed",
        f"on {date}.",
        f"Opening hours: {opens}:00 - {closes}:00",
        f"Room {rng.randint(100, 499)}, phone 555-{rng.randint(1000, 9999)}",
    ]
    facts = {"doc": "notice", "place": place, "day": day, "opens": f"{opens}:00", "closes": f"{closes}:00"}
    return {"lines": lines, "facts": facts}


def _render(lines: list[str]) -> Image.Image:
    image, draw = canvas(WIDTH, HEIGHT, (236, 236, 232))
    draw.rectangle([14, 10, WIDTH - 14, HEIGHT - 10], fill=(255, 255, 255), outline=GRAY)
    top = max(26, (HEIGHT - LINE_H * len(lines)) // 2)
    for i, line in enumerate(lines):
        heading = i == 0
        label(draw, (28, top + i * LINE_H), line, size=15 if heading else 12, fill=BLACK, anchor="lm")
        if heading:
            draw.line([(28, top + 12), (WIDTH - 28, top + 12)], fill=GRAY, width=1)
    return image


# ----------------------------------------------------------------------------- questions
# Each template: (rng, doc) -> (question, answer, options), or None for the other document kind.


def total(rng: random.Random, doc: dict[str, Any]) -> tuple[str, str, None] | None:
    if doc["facts"]["doc"] != "invoice":
        return None
    return "What is the total amount due on the invoice?", doc["facts"]["total"], None


def invoice_number(rng: random.Random, doc: dict[str, Any]) -> tuple[str, str, None] | None:
    if doc["facts"]["doc"] != "invoice":
        return None
    return "What is the invoice number?", doc["facts"]["number"], None


def quantity(rng: random.Random, doc: dict[str, Any]) -> tuple[str, str, None] | None:
    if doc["facts"]["doc"] != "invoice":
        return None
    return "How many items were bought in total?", str(sum(i["qty"] for i in doc["facts"]["items"])), None


def unit_price(rng: random.Random, doc: dict[str, Any]) -> tuple[str, str, None] | None:
    if doc["facts"]["doc"] != "invoice":
        return None
    item = rng.choice(doc["facts"]["items"])
    return f"What is the unit price of one {item['name']}?", money(item["unit"]), None


def closed_day(rng: random.Random, doc: dict[str, Any]) -> tuple[str, str, None] | None:
    if doc["facts"]["doc"] != "notice":
        return None
    return f"On which day of the week will the {doc['facts']['place']} be closed?", doc["facts"]["day"], None


def hours(rng: random.Random, doc: dict[str, Any]) -> tuple[str, str, None] | None:
    if doc["facts"]["doc"] != "notice":
        return None
    which = rng.choice(("opens", "closes"))
    return f"At what time does the {doc['facts']['place']} {which[:-1]}?", doc["facts"][which], None


TEMPLATES = {f.__name__: f for f in (total, invoice_number, quantity, unit_price, closed_day, hours)}
DOCUMENTS = {"invoice": _invoice, "notice": _notice}


def generate(rng: random.Random, index: int) -> dict[str, Any]:
    kind = rng.choice(sorted(DOCUMENTS))
    doc = DOCUMENTS[kind](rng)
    template, (question, answer, options) = first_applicable(rng, TEMPLATES, doc)
    arithmetic = template == "quantity"
    return make_record(
        KIND,
        image=_render(doc["lines"]),
        question=question,
        answer=answer,
        options=options,
        ground_truth={"kind": KIND, "lines": doc["lines"]},
        difficulty="medium" if arithmetic or len(doc["lines"]) > 9 else "easy",
        category="Mathematics" if arithmetic else "Deduction",
        template=template,
    )
