"""Web page layouts: header, navigation links, a main section with heading, text and buttons,
an optional sidebar and a footer. Every drawn element is listed with its tag, text and box.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image

from r1ov.synthetic.draw import BLACK, LIGHT, WHITE, canvas, first_applicable, label, make_record, text_width

KIND = "layout"
WIDTH, HEIGHT = 320, 256

SITES = ("Acme Store", "City Library", "Blue Cafe", "Peak Travel", "Nova Bank", "Green Garden", "Pixel News")
LINKS = ("Home", "Shop", "About", "Blog", "Help", "Contact", "Menu", "Events")
HEADINGS = ("Spring sale", "Opening hours", "New arrivals", "Book a table", "Plan your trip", "Our services")
PARAGRAPHS = (
    "Find what you need today.",
    "Friendly staff, fair prices.",
    "Open every day of the week.",
    "Free delivery on large orders.",
    "Members get early access.",
)
BUTTONS = ("Buy now", "Sign up", "Learn more", "Book", "Subscribe", "Log in", "Order", "Join")
SIDEBAR = ("Latest news", "Top picks", "Offers", "Follow us")
BUTTON_COLORS = ((46, 125, 50), (25, 118, 210), (198, 40, 40))


def _build(rng: random.Random) -> list[dict[str, Any]]:
    site = rng.choice(SITES)
    elements: list[dict[str, Any]] = [{"tag": "header", "text": site, "box": [0, 0, WIDTH, 36]}]
    elements.append({"tag": "nav", "text": "", "box": [0, 36, WIDTH, 60]})
    x = 12
    for link in rng.sample(LINKS, rng.randint(3, 5)):
        width = text_width(link, 12)
        elements.append({"tag": "a", "text": link, "box": [x, 40, x + width, 56]})
        x += width + 18
    sidebar = rng.random() < 0.5
    main_right = 212 if sidebar else WIDTH - 12
    elements.append({"tag": "main", "text": "", "box": [0, 60, main_right, 226]})
    elements.append({"tag": "h1", "text": rng.choice(HEADINGS), "box": [12, 70, main_right - 8, 94]})
    for i, paragraph in enumerate(rng.sample(PARAGRAPHS, rng.randint(1, 2))):
        elements.append({"tag": "p", "text": paragraph, "box": [12, 100 + 20 * i, main_right - 8, 116 + 20 * i]})
    x = 12
    for text in rng.sample(BUTTONS, rng.randint(1, 2)):
        width = text_width(text, 12) + 20
        elements.append({"tag": "button", "text": text, "box": [x, 180, x + width, 206]})
        x += width + 12
    if sidebar:
        elements.append({"tag": "aside", "text": rng.choice(SIDEBAR), "box": [main_right, 60, WIDTH, 226]})
    elements.append({"tag": "footer", "text": f"Copyright 2024 {site}", "box": [0, 226, WIDTH, HEIGHT]})
    return elements


def _render(rng: random.Random, elements: list[dict[str, Any]]) -> Image.Image:
    image, draw = canvas(WIDTH, HEIGHT)
    button_color = rng.choice(BUTTON_COLORS)
    for element in elements:
        tag, text, (x0, y0, x1, y1) = element["tag"], element["text"], element["box"]
        if tag == "header":
            draw.rectangle([x0, y0, x1, y1], fill=(38, 50, 72))
            label(draw, (12, (y0 + y1) / 2), text, size=16, fill=WHITE, anchor="lm")
        elif tag == "nav":
            draw.rectangle([x0, y0, x1, y1], fill=LIGHT)
        elif tag == "a":
            label(draw, (x0, (y0 + y1) / 2), text, size=12, fill=(25, 80, 170), anchor="lm")
        elif tag == "h1":
            label(draw, (x0, (y0 + y1) / 2), text, size=17, anchor="lm")
        elif tag == "p":
            label(draw, (x0, (y0 + y1) / 2), text, size=12, fill=(70, 70, 70), anchor="lm")
        elif tag == "button":
            draw.rounded_rectangle([x0, y0, x1, y1], radius=6, fill=button_color)
            label(draw, ((x0 + x1) / 2, (y0 + y1) / 2), text, size=12, fill=WHITE)
        elif tag == "aside":
            draw.rectangle([x0, y0, x1, y1], fill=(244, 244, 236), outline=LIGHT)
            label(draw, (x0 + 8, y0 + 16), text, size=12, fill=BLACK, anchor="lm")
            for i in range(3):  # placeholder list items: grey bars, not text
                draw.rectangle([x0 + 8, y0 + 34 + 16 * i, x1 - 14 - 8 * i, y0 + 40 + 16 * i], fill=LIGHT)
        elif tag == "footer":
            draw.rectangle([x0, y0, x1, y1], fill=(60, 60, 60))
            label(draw, ((x0 + x1) / 2, (y0 + y1) / 2), text, size=11, fill=WHITE)
    return image


# ----------------------------------------------------------------------------- questions
# Each template: (rng, elements) -> (question, answer), or None when it does not apply.


def _tagged(elements: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    return [e for e in elements if e["tag"] == tag]


def site_name(rng: random.Random, elements: list[dict[str, Any]]) -> tuple[str, str]:
    return "What is the site name shown in the page header?", _tagged(elements, "header")[0]["text"]


def heading(rng: random.Random, elements: list[dict[str, Any]]) -> tuple[str, str]:
    return "What is the main heading of the page?", _tagged(elements, "h1")[0]["text"]


def link_count(rng: random.Random, elements: list[dict[str, Any]]) -> tuple[str, str]:
    return "How many links are in the navigation bar?", str(len(_tagged(elements, "a")))


def button_text(rng: random.Random, elements: list[dict[str, Any]]) -> tuple[str, str]:
    buttons = sorted(_tagged(elements, "button"), key=lambda e: e["box"][0])
    if len(buttons) == 1:
        return "What text is written on the button?", buttons[0]["text"]
    side = rng.randrange(2)
    return f"What text is written on the {('left', 'right')[side]} button?", buttons[side]["text"]


def has_sidebar(rng: random.Random, elements: list[dict[str, Any]]) -> tuple[str, str]:
    return "Does the page have a sidebar?", "yes" if _tagged(elements, "aside") else "no"


TEMPLATES = {f.__name__: f for f in (site_name, heading, link_count, button_text, has_sidebar)}


def generate(rng: random.Random, index: int) -> dict[str, Any]:
    elements = _build(rng)
    template, (question, answer) = first_applicable(rng, TEMPLATES, elements)
    return make_record(
        KIND,
        image=_render(rng, elements),
        question=question,
        answer=answer,
        ground_truth={"kind": KIND, "elements": elements},
        difficulty="easy" if template != "link_count" else "medium",
        category="Deduction",
        template=template,
    )
