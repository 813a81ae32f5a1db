"""The formal-language checks parse with real grammars: valid SPICE netlists and every
PlantUML diagram kind the paper's flowcharts use pass; prose and broken syntax do not."""

from __future__ import annotations

import pytest

from r1ov.formalize import checks

ACTIVITY = [
    "@startuml\nstart\n:Read input;\nif (valid?) then (yes)\n  :Process;\n"
    "else (no)\n  :Report error;\nendif\nstop\n@enduml",
    "@startuml\nstart\nwhile (more data?) is (yes)\n  :read line;\nendwhile (no)\nstop\n@enduml",
    "@startuml\nstart\nrepeat\n  :try again;\nrepeat while (failed?) is (yes)\nstop\n@enduml",
    "@startuml\nstart\nfork\n  :task A;\nfork again\n  :task B;\nend fork\nstop\n@enduml",
    "@startuml\n|Customer|\nstart\n:Place order;\n|Shop|\n:Ship order;\nstop\n@enduml",
    "@startuml\nstart\npartition Setup {\n  :install;\n  :configure;\n}\n:run;\nend\n@enduml",
    "@startuml\ntitle Checkout\nstart\n:Scan items\nand total them;\nif (coupon?) then (yes)\n"
    ":apply discount;\nelseif (member?) then (yes)\n:apply points;\nelse (no)\nendif\nstop\n@enduml",
    "@startuml\nstart\n:step one;\n-> next;\n:step two;\nnote right: a comment\nstop\n@enduml",
]
ARROWS = [
    '@startuml\nrectangle "Start" as a <<start>>\nrectangle "End" as b\na --> b : go\n@enduml',
    "@startuml\nAlice -> Bob: hello\nBob --> Alice: hi\n@enduml",
    "@startuml\n[*] --> Idle\nIdle --> Busy : job\nBusy --> [*]\n@enduml",
    '@startuml\n(*) --> "First"\n"First" --> (*)\n@enduml',
    "@startuml\nclass Car\nclass Wheel\nCar *-- Wheel\n@enduml",
]


@pytest.mark.parametrize("text", ACTIVITY + ARROWS)
def test_plantuml_accepts_every_diagram_kind(text: str) -> None:
    passed, detail = checks.plantuml(text)
    assert passed, detail


@pytest.mark.parametrize(
    "text",
    [
        "@startuml\nThe flowchart starts, then it checks the input.\n@enduml",
        "@startuml\n@enduml",
        "start\n:no markers;\nstop",
        "I'm sorry, I cannot draw this diagram.",
    ],
)
def test_plantuml_rejects_prose_and_empty_diagrams(text: str) -> None:
    assert not checks.plantuml(text)[0]


NETLIST = """Voltage divider with a diode and an op-amp stage
* components
V1 in 0 DC 5
V2 vcc 0 SIN(0 1 1k)
R1 in mid 10k
R2 mid 0 4.7k tc1=0.001
C1 mid 0 100n
L1 out mid 2.2uH
D1 mid out D1N4148
Q1 c b 0 Q2N3904
M1 d g s s NMOS W=1u L=0.18u
E1 out 0 mid 0 10
X1 in out vcc 0 opamp
K1 L1 L2 0.99
.model D1N4148 D(Is=2.5n)
.tran 1u 1m
.end"""


def test_spice_grammar_accepts_a_real_netlist() -> None:
    passed, detail = checks.spice(NETLIST)
    assert passed and detail == "12 elements", detail


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("R1 in out", "not a valid R element"),
        ("R1 in out ten", "not a valid R element"),
        ("Resistor R1 connects the input to the output.", "not a valid R element"),
        ("Q1 c b", "not a valid Q element"),
        ("Z1 a b 5", "not a SPICE element"),
        ("V1 in 0 SIN(0 1", "not a valid V element"),
    ],
)
def test_spice_grammar_rejects_broken_lines(line: str, why: str) -> None:
    passed, detail = checks.spice(f"title\n{line}\n.end")
    assert not passed and why in detail, detail


def test_html_is_parsed_with_one_void_list() -> None:
    assert checks.html("<html><body><p>a<br>b</p><img src=x><input></body></html>")[0]
    assert not checks.html("<div><p>open</div>")[0]
    assert "param" in checks.VOID_ELEMENTS and "wbr" in checks.VOID_ELEMENTS
