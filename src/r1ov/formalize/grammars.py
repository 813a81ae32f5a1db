"""Grammars for the formal languages that have no well-kept Python parser of their own.

SPICE element lines are parsed with pyparsing, one grammar per element letter (the arity and
value forms of Berkeley SPICE 3 / ngspice: passives, sources with DC/AC/transient functions,
semiconductors by model name, controlled sources, subcircuit calls, coupling, switches).
PlantUML is checked line by line against the statement forms of the diagram kinds the paper's
flowcharts use: activity diagrams (new syntax: ``start``, ``:action;``, ``if/else/endif``,
loops, forks, partitions, swimlanes), and arrow diagrams (sequence, class, use case,
component, state, old-style activity).
"""

from __future__ import annotations

import re
from functools import cache

import pyparsing as pp

# --------------------------------------------------------------------------- SPICE


@cache
def _spice_elements() -> dict[str, pp.ParserElement]:
    """Element letter -> grammar of the whole line (the element name included)."""
    number = pp.Regex(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?(meg|mil|[tgkmunpfa]|µ)?[a-zA-Z]*", re.IGNORECASE)
    expression = pp.QuotedString("{", end_quote_char="}") | pp.QuotedString("'")
    value = number | expression
    identifier = pp.Word(pp.alphas + "_", pp.alphanums + "_.$")
    # Node names: letters, digits and a few separators, never ending in prose punctuation.
    node = pp.Regex(r"[A-Za-z0-9_]([\w.:+\-#\[\]<>$]*[\w\]>#$+\-])?")
    param = pp.Group(identifier + pp.Suppress("=") + value)
    params = pp.ZeroOrMore(param)
    function = pp.Group(
        pp.one_of("SIN PULSE EXP PWL SFFM AM", caseless=True)
        + pp.Suppress("(")
        + pp.ZeroOrMore(value + pp.Optional(pp.Suppress(",")))
        + pp.Suppress(")")
    )
    source_value = (
        pp.Optional(pp.CaselessKeyword("DC")) + pp.Optional(value)
        + pp.Optional(pp.CaselessKeyword("AC") + value + pp.Optional(value))
        + pp.Optional(function)
    )  # fmt: skip

    def name(letter: str) -> pp.ParserElement:
        return pp.Regex(rf"{letter}\w*", re.IGNORECASE)

    two = node + node
    grammars = {
        "R": name("R") + two + value + params,
        "C": name("C") + two + value + params,
        "L": name("L") + two + value + params,
        "V": name("V") + two + source_value,
        "I": name("I") + two + source_value,
        "D": name("D") + two + identifier + params,
        "Q": name("Q") + node + node + node + pp.Optional(node + pp.FollowedBy(identifier)) + identifier + params,
        "M": name("M") + node + node + node + node + identifier + params,
        "J": name("J") + node + node + node + identifier + params,
        "E": name("E") + two + two + value,
        "G": name("G") + two + two + value,
        "F": name("F") + two + identifier + value,
        "H": name("H") + two + identifier + value,
        "K": name("K") + identifier + identifier + value,
        "S": name("S") + two + two + identifier + pp.Optional(pp.one_of("ON OFF", caseless=True)),
        "W": name("W") + two + identifier + identifier + pp.Optional(pp.one_of("ON OFF", caseless=True)),
        "T": name("T") + two + two + pp.OneOrMore(param),
        "B": name("B") + two + pp.Regex(r"[VI]\s*=\s*.+", re.IGNORECASE),
        # Subcircuit call: nodes then the subcircuit name; a name alone cannot be told from a node.
        "X": name("X") + pp.OneOrMore(node) + params,
    }
    return {letter: (grammar + pp.StringEnd()) for letter, grammar in grammars.items()}


def spice_line(line: str) -> str | None:
    """None when ``line`` is a valid SPICE element line, else what is wrong with it."""
    letter = line[:1].upper()
    grammar = _spice_elements().get(letter)
    if grammar is None:
        return f"{line.split()[0]!r} is not a SPICE element"
    # Inline comments ($ or ;) end the statement.
    statement = re.split(r"\s[$;]", line, maxsplit=1)[0]
    try:
        grammar.parse_string(statement, parse_all=True)
    except pp.ParseException as exc:
        found = statement[exc.loc :].split()[:1]
        return f"is not a valid {letter} element (column {exc.col}: unexpected {found[0] if found else 'end'!r})"
    if letter == "X" and len(statement.split()) < 3:
        return "is a subcircuit call without nodes"
    return None


# --------------------------------------------------------------------------- PlantUML

_PUML_STATEMENTS = [
    # comments, metadata and styling
    r"'.*",
    r"(title|caption|header|footer|legend|endlegend|end\s+legend|left to right direction|top to bottom direction|"
    r"hide|show|skinparam|scale|autonumber|!\w+|newpage|allowmixing|mainframe)\b.*",
    r"\}|\{|end\s*note|endnote|note\b.*|/'.*|.*'/",
    # activity diagrams (new syntax)
    r"(start|stop|end|kill|detach|break|else|endif|end\s+if|endwhile|end\s+while|repeat|fork|fork again|"
    r"end\s*fork|end\s*merge|split|split again|end\s*split)\s*(\([^)]*\))?\s*;?",
    r":.*[;|<>\]}/]",  # an action, possibly over several lines (see _join_actions)
    r"(if|elseif|while|repeat\s+while|backward)\s*\(.*",
    r"(partition|group|package|rectangle|card|namespace|together)\b.*",
    r"\|[^|]+\|.*",  # swimlane
    r"[-=]+>?\s*(\[.*\])?\s*.*;?",  # arrow label in activity (-> text;)
    # declarations of other kinds
    r"(participant|actor|boundary|control|entity|database|collections|queue|usecase|class|interface|"
    r"abstract|enum|annotation|object|component|node|cloud|frame|folder|artifact|state|storage|"
    r"agent|stack|file|person|map|json|diamond|circle|label)\b.*",
    r"(activate|deactivate|destroy|create|return|ref|alt|opt|loop|par|critical|group|box|end box)\b.*",
    r"== .*|\.\.\..*|\|\|\|",
]
_STATEMENT = re.compile(r"^(?:" + "|".join(f"(?:{p})" for p in _PUML_STATEMENTS) + r")$", re.IGNORECASE)
# An edge between two elements: sequence, class, use case, component, state, old activity.
_EDGE = re.compile(
    r"^\s*(\"[^\"]*\"|\[\*\]|\(\*\)|\[[^\]]+\]|\([^)]+\)|[\w.:]+)\s*(\"[^\"]*\"\s*)?"
    r"[<*o#x}+^|]*[-.=]+(\[[^\]]*\]|(up|down|left|right|u|d|l|r)\b)?[-.=]*[>*o#x{+^|]*"
    r"\s*(\"[^\"]*\"\s*)?(\"[^\"]*\"|\[\*\]|\(\*\)|\[[^\]]+\]|\([^)]+\)|[\w.:]+)\s*(:.*)?$",
    re.IGNORECASE,
)


def _join_actions(lines: list[str]) -> list[str]:
    """Multi-line ``:action`` bodies joined into one statement (they end at ``;`` or another terminator)."""
    joined: list[str] = []
    open_action = False
    for line in lines:
        if open_action:
            joined[-1] += " " + line
        else:
            joined.append(line)
        if line.startswith(":") or open_action:
            open_action = not re.search(r"[;|<>\]}/]\s*$", joined[-1])
    return joined


def plantuml_body(lines: list[str]) -> tuple[int, int, str | None]:
    """(edges, activity steps, first bad line) of the statements between @startuml and @enduml."""
    edges = steps = 0
    for line in _join_actions([s.strip() for s in lines if s.strip()]):
        if _EDGE.match(line):
            edges += 1
        elif _STATEMENT.match(line):
            steps += line.startswith(":") or line.lower().startswith(("if", "while", "repeat", "start", "fork"))
        else:
            return edges, steps, line
    return edges, steps, None
