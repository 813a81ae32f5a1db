"""Diagrams: circuits as SPICE netlists, flowcharts as PlantUML."""

from __future__ import annotations

from typing import Any

from r1ov.formalize import checks
from r1ov.formalize.base import Formalizer


def spice_reference(truth: dict[str, Any]) -> str:
    """``{"components": [{name, type, nodes, value}]}`` -> a netlist with a title and ``.end``."""
    lines = ["* circuit"]
    for part in truth["components"]:
        letter = str(part["type"]).upper()
        name = str(part["name"])
        # SPICE reads the element kind from the first letter of the name.
        if not name.upper().startswith(letter):
            name = f"{letter}{name}"
        lines.append(" ".join([name, *(str(n) for n in part["nodes"]), str(part["value"])]))
    lines.append(".end")
    return "\n".join(lines)


def _quoted(text: str) -> str:
    return '"' + str(text).replace('"', "'").replace("\n", " ") + '"'


def plantuml_reference(truth: dict[str, Any]) -> str:
    """Boxes as ``rectangle "label" as id <<shape>>``, arrows as ``a --> b : label``."""
    lines = ["@startuml"]
    lines += [f"rectangle {_quoted(n['label'])} as {n['id']} <<{n['shape']}>>" for n in truth["nodes"]]
    for edge in truth["edges"]:
        label = f" : {edge['label']}" if edge.get("label") else ""
        lines.append(f"{edge['src']} --> {edge['dst']}{label}")
    lines.append("@enduml")
    return "\n".join(lines)


FORMALIZERS = (
    Formalizer("circuit", "spice", "formalize_circuit", checks.spice, spice_reference),
    Formalizer("flowchart", "plantuml", "formalize_flowchart", checks.plantuml, plantuml_reference),
)
