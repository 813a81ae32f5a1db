"""Synthetic data: determinism, schema, decodable images, and answers that follow from ground truth.

The answer checks below recompute each answer from the record's ground truth and question
with code written independently of the generators (circuits by nodal analysis, CLEVR by
filtering the object list, ...), so a generator that draws one thing and answers another fails.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import ImageFont

from r1ov.cli import main as cli_main
from r1ov.config import ConfigError, SynthConfig
from r1ov.data import records
from r1ov.data.imaging import load_image
from r1ov.scoring.answers import answers_match
from r1ov.scoring.reasoning import option_letters
from r1ov.synthetic import GENERATORS, generate, run
from r1ov.synthetic.draw import font

ALL_KINDS = ["circuit", "flowchart", "table", "chart", "natural", "text", "math", "clevr", "layout"]
GT_KEYS = {
    "circuit": {"kind", "components", "ground"},
    "flowchart": {"kind", "nodes", "edges"},
    "layout": {"kind", "elements"},
    "table": {"kind", "columns", "rows"},
    "chart": {"kind", "chart_type", "title", "x", "series"},
    "natural": {"kind", "objects", "caption"},
    "text": {"kind", "lines"},
    "math": {"kind", "figure", "facts", "strategy"},
    "clevr": {"kind", "objects"},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, Any]]]:
    uri = str(tmp_path_factory.mktemp("synth") / "all")
    run(SynthConfig(output_uri=uri, n=len(ALL_KINDS) * 40, seed=11, kinds=ALL_KINDS, shard_size=100))
    return uri, records.read_records(uri)


# ----------------------------------------------------------------------------- determinism


def _shard_bytes(uri: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(Path(uri, records.RECORDS).glob("*.parquet"))]


def test_same_seed_same_rows_and_bytes(tmp_path: Path) -> None:
    config = {"n": 30, "seed": 4, "kinds": ALL_KINDS, "shard_size": 7}
    run(SynthConfig(output_uri=str(tmp_path / "a"), **config))
    run(SynthConfig(output_uri=str(tmp_path / "b"), **config))
    assert records.read_records(str(tmp_path / "a")) == records.read_records(str(tmp_path / "b"))
    assert _shard_bytes(str(tmp_path / "a")) == _shard_bytes(str(tmp_path / "b"))
    assert len(_shard_bytes(str(tmp_path / "a"))) == 5  # 30 rows in shards of 7


def test_same_bytes_in_another_process_with_another_hash_seed(tmp_path: Path) -> None:
    """The CLI in a fresh interpreter (different PYTHONHASHSEED) writes the same rows."""
    run(SynthConfig(output_uri=str(tmp_path / "here"), n=18, seed=2, kinds=ALL_KINDS))
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    argv = ["synth", "--out", str(tmp_path / "there"), "--n", "18", "--seed", "2", "--kinds", ",".join(ALL_KINDS)]
    code = f"import sys; from r1ov.cli import main; sys.exit(main({argv!r}))"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    assert _shard_bytes(str(tmp_path / "here")) == _shard_bytes(str(tmp_path / "there"))


def test_other_seed_other_data(tmp_path: Path) -> None:
    run(SynthConfig(output_uri=str(tmp_path / "a"), n=16, seed=0))
    run(SynthConfig(output_uri=str(tmp_path / "b"), n=16, seed=1))
    a, b = records.read_records(str(tmp_path / "a")), records.read_records(str(tmp_path / "b"))
    assert [r["image_type"] for r in a] == [r["image_type"] for r in b]  # same round-robin
    assert not {r["id"] for r in a} & {r["id"] for r in b}
    assert all(x["image"] != y["image"] for x, y in zip(a, b, strict=True))


def test_longer_run_extends_shorter_one(tmp_path: Path) -> None:
    run(SynthConfig(output_uri=str(tmp_path / "short"), n=10, seed=3))
    run(SynthConfig(output_uri=str(tmp_path / "long"), n=25, seed=3))
    assert records.read_records(str(tmp_path / "long"))[:10] == records.read_records(str(tmp_path / "short"))


def test_font_is_the_bundled_face_and_renders_stably() -> None:
    face = font(12)
    assert isinstance(face, ImageFont.FreeTypeFont)
    assert face.font.family == "Aileron"
    fresh = ImageFont.load_default(size=12)
    assert bytes(face.getmask("Total: 42.50")) == bytes(fresh.getmask("Total: 42.50"))


# ----------------------------------------------------------------------------- schema and images


def test_rows_fit_the_schema(dataset: tuple[str, list[dict[str, Any]]]) -> None:
    uri, rows = dataset
    for shard in sorted(Path(uri, records.RECORDS).glob("*.parquet")):
        assert pq.read_schema(shard).equals(records.SCHEMA, check_metadata=False)
    assert records.read_manifest(uri)["records"] == len(rows) == len(ALL_KINDS) * 40
    assert records.read_manifest(uri)["rejected"] == 0
    assert len({r["id"] for r in rows}) == len(rows)
    for index, row in enumerate(rows):
        kind = ALL_KINDS[index % len(ALL_KINDS)]  # round-robin order
        assert row["image_type"] == kind and row["source"] == f"synthetic/{kind}"
        assert row["id"] == records.record_id(row["source"], row["question"], row["image"])
        assert row["question"].strip() and row["answer"].strip()
        meta = records.metadata(row)
        assert meta["kind"] == kind and meta["difficulty"] in {"easy", "medium", "hard"}
        assert meta["category"] in {"Mathematics", "Physics", "Deduction"}
        if row["options"]:
            assert row["answer"] in option_letters(row["options"])
            assert len(set(row["options"])) == len(row["options"]) >= 2
            assert not any(re.match(r"^\(?[A-D]\)", o) for o in row["options"])  # texts without letters


def test_images_decode_at_the_expected_size(dataset: tuple[str, list[dict[str, Any]]]) -> None:
    _, rows = dataset
    for row in rows:
        image = load_image(row)
        assert 224 <= image.width <= 336 and 224 <= image.height <= 336, (row["image_type"], image.size)
        assert row["image"].startswith(b"\x89PNG")
        assert any(low != high for low, high in image.getextrema())  # something was drawn


def test_ground_truth_has_the_documented_shape(dataset: tuple[str, list[dict[str, Any]]]) -> None:
    _, rows = dataset
    for row in rows:
        truth = records.ground_truth(row)
        kind = row["image_type"]
        assert set(truth) == GT_KEYS[kind], kind
        assert truth["kind"] == kind
        if kind == "circuit":
            assert all(
                set(c) == {"name", "type", "nodes", "value"} and c["type"] in "RCLVID" for c in truth["components"]
            )
        elif kind == "table":
            assert all(len(r) == len(truth["columns"]) and all(isinstance(c, str) for c in r) for r in truth["rows"])
        elif kind == "chart":
            assert truth["chart_type"] in {"bar", "line"}
            assert all(len(s["values"]) == len(truth["x"]) for s in truth["series"])
        elif kind == "flowchart":
            ids = {n["id"] for n in truth["nodes"]}
            assert {n["shape"] for n in truth["nodes"]} <= {"start", "action", "decision", "end"}
            assert all(e["src"] in ids and e["dst"] in ids for e in truth["edges"])
        elif kind in ("natural", "clevr"):
            for obj in truth["objects"]:
                x0, y0, x1, y1 = obj["box"]
                assert 0 <= x0 < x1 <= 336 and 0 <= y0 < y1 <= 336
        if kind == "clevr":
            assert 3 <= len(truth["objects"]) <= 6
            for o in truth["objects"]:
                assert o["size"] in {"small", "large"} and o["material"] in {"metal", "rubber"}
                assert o["shape"] in {"cube", "sphere", "cylinder"}


def test_every_kind_and_template_appears(dataset: tuple[str, list[dict[str, Any]]]) -> None:
    _, rows = dataset
    assert Counter(r["image_type"] for r in rows) == dict.fromkeys(ALL_KINDS, 40)
    templates = Counter((r["image_type"], records.metadata(r)["template"]) for r in rows)
    assert len(templates) >= 30
    assert any(r["options"] for r in rows) and any(not r["options"] for r in rows)


# ----------------------------------------------------------------------------- answers from ground truth


def _solve_circuit(truth: dict[str, Any]) -> dict[str, float]:
    """Nodal analysis of one grounded DC source and resistors."""
    source = next(c for c in truth["components"] if c["type"] == "V")
    volts = float(source["value"].split()[-1])
    resistors = [c for c in truth["components"] if c["type"] == "R"]
    nodes = sorted({n for c in resistors for n in c["nodes"]} - {truth["ground"], source["nodes"][0]})
    fixed = {truth["ground"]: 0.0, source["nodes"][0]: volts}
    g = np.zeros((len(nodes), len(nodes)))
    rhs = np.zeros(len(nodes))
    for c in resistors:
        conductance = 1 / float(c["value"])
        for a, b in (c["nodes"], c["nodes"][::-1]):
            if a in fixed:
                continue
            g[nodes.index(a), nodes.index(a)] += conductance
            if b in fixed:
                rhs[nodes.index(a)] += conductance * fixed[b]
            else:
                g[nodes.index(a), nodes.index(b)] -= conductance
    potential = dict(fixed, **dict(zip(nodes, np.linalg.solve(g, rhs) if nodes else [], strict=True)))
    out: dict[str, float] = {}
    battery_current = 0.0
    for c in resistors:
        a, b = c["nodes"]
        drop = potential[a] - potential[b]
        out[f"current {c['name']}"] = abs(drop) / float(c["value"])
        out[f"voltage {c['name']}"] = abs(drop)
        if source["nodes"][0] in (a, b):
            battery_current += abs(drop) / float(c["value"])
    out["battery"] = battery_current
    out["total"] = volts / battery_current
    return out


def _circuit(row: dict[str, Any], truth: dict[str, Any]) -> str:
    solved = _solve_circuit(truth)
    question = row["question"]
    if "total resistance" in question:
        return f"{solved['total']:g}"
    if "battery" in question:
        return f"{solved['battery']:g}"
    name = re.search(r"\b(R\d+)\b", question).group(1)
    return f"{solved[('current ' if 'current' in question else 'voltage ') + name]:g}"


def _table(row: dict[str, Any], truth: dict[str, Any]) -> str:
    question, columns, rows = row["question"], truth["columns"], truth["rows"]

    def column(name: str) -> list[int]:
        return [int(r[columns.index(name)]) for r in rows]

    if m := re.match(r"What is the value of (\w+) for (\w+)\?", question):
        return next(r[columns.index(m.group(1))] for r in rows if r[0] == m.group(2))
    if m := re.search(r"has the (largest|smallest) value in the (\w+) column", question):
        values = column(m.group(2))
        pick = max(values) if m.group(1) == "largest" else min(values)
        return rows[values.index(pick)][0]
    if m := re.match(r"What is the sum of the (\w+) column\?", question):
        return str(sum(column(m.group(1))))
    m = re.match(r"How much greater is the (\w+) of (\w+) than the \w+ of (\w+)\?", question)
    values = dict(zip((r[0] for r in rows), column(m.group(1)), strict=True))
    return str(values[m.group(2)] - values[m.group(3)])


def _chart(row: dict[str, Any], truth: dict[str, Any]) -> str:
    question = row["question"]
    named = re.search(r" for ([\w ]+?)(?: in the chart)?\?", question)
    series = next((s for s in truth["series"] if named and s["name"] == named.group(1)), truth["series"][0])
    values = dict(zip(truth["x"], series["values"], strict=True))
    if "highest" in question:
        return max(values, key=values.__getitem__)
    if "lowest" in question:
        return min(values, key=values.__getitem__)
    if "sum of all" in question:
        return str(sum(values.values()))
    if m := re.search(r"difference between the values of (\w+) and (\w+)", question):
        return str(abs(values[m.group(1)] - values[m.group(2)]))
    return str(values[re.match(r"What is the value of (\w+)", question).group(1)])


def _clevr(row: dict[str, Any], truth: dict[str, Any]) -> str:
    objects, question = truth["objects"], row["question"]
    words = {"cubes": "cube", "spheres": "sphere", "cylinders": "cylinder", "object": None}
    values = {
        "cube": "shape", "sphere": "shape", "cylinder": "shape", "metal": "material", "rubber": "material",
        "small": "size", "large": "size", "red": "color", "green": "color", "blue": "color", "yellow": "color",
        "gray": "color", "purple": "color", "brown": "color", "cyan": "color",
    }  # fmt: skip

    def select(phrase: str) -> list[dict[str, Any]]:
        wanted = {}
        for word in phrase.split():
            word = words.get(word, word)
            if word in values:
                wanted[values[word]] = word
        return [o for o in objects if all(o[k] == v for k, v in wanted.items())]

    if question == "How many objects are there in total?":
        return str(len(objects))
    if m := re.match(r"How many (.+) are there\?", question):
        return str(len(select(m.group(1))))
    if m := re.match(r"Are there more (\w+) than (\w+)\?", question):
        return "yes" if len(select(m.group(1))) > len(select(m.group(2))) else "no"
    m = re.match(r"What (\w+) is the (.+?)(?: made of)?\?", question)
    (match,) = select(m.group(2))  # the phrase must single out exactly one object
    return match[m.group(1)]


def _math(row: dict[str, Any], truth: dict[str, Any]) -> str:
    facts, question = truth["facts"], row["question"]
    if "length of leg b" in question:
        return f"{math.sqrt(facts['c'] ** 2 - facts['a'] ** 2):g}"
    if "hypotenuse" in question:
        return f"{math.hypot(facts['a'], facts['b']):g}"
    if "right triangle with legs" in question:
        return f"{facts['a'] * facts['b'] / 2:g}"
    if "area of the rectangle" in question:
        return str(facts["width"] * facts["height"])
    if "perimeter" in question:
        return str(2 * (facts["width"] + facts["height"]))
    if "diagonal" in question:
        return f"{math.hypot(facts['width'], facts['height']):g}"
    radius = facts["r"] if "r" in facts else facts.get("d", 0) / 2
    if "area of the circle" in question:
        return f"{facts['pi'] * radius**2:.4f}"
    if "circumference" in question:
        return f"{2 * facts['pi'] * radius:.4f}"
    if "trapezoid" in question:
        return f"{(facts['a'] + facts['b']) * facts['h'] / 2:g}"
    return str(180 - facts["A"] - facts["B"])


def _flowchart(row: dict[str, Any], truth: dict[str, Any]) -> str:
    question = row["question"]
    by_label = {n["label"]: n["id"] for n in truth["nodes"]}
    by_id = {n["id"]: n["label"] for n in truth["nodes"]}
    if "decision" in question:
        return str(sum(n["shape"] == "decision" for n in truth["nodes"]))
    if "action steps" in question:
        return str(sum(n["shape"] == "action" for n in truth["nodes"]))
    name = re.search(r"'(.+?)'", question).group(1)
    wanted = "no" if "is no" in question else ""
    (edge,) = [e for e in truth["edges"] if e["src"] == by_label[name] and (not wanted or e["label"] == wanted)]
    return by_id[edge["dst"]]


def _natural(row: dict[str, Any], truth: dict[str, Any]) -> str:
    singular = {"trees": "tree", "houses": "house", "cars": "car", "people": "person", "clouds": "cloud"}
    counts = Counter(o["label"] for o in truth["objects"])
    question = row["question"]
    if m := re.match(r"Is there (?:a|the) (\w+)", question):
        return "yes" if counts[m.group(1)] else "no"
    if m := re.match(r"How many (\w+) and (\w+) are there in total\?", question):
        return str(counts[singular[m.group(1)]] + counts[singular[m.group(2)]])
    if m := re.match(r"How many (\w+) are in the picture\?", question):
        return str(counts[singular[m.group(1)]])
    ranked = Counter({k: counts[k] for k in ("tree", "house", "car", "person")}).most_common()
    assert ranked[0][1] > ranked[1][1]
    return next(p for p, s in singular.items() if s == ranked[0][0])


def _text(row: dict[str, Any], truth: dict[str, Any]) -> str:
    lines = truth["lines"]
    if "total amount" in row["question"]:
        return next(line.split(": ")[1] for line in lines if line.startswith("Total: "))
    if "items were bought" in row["question"]:
        return str(sum(int(m.group(1)) for line in lines if (m := re.match(r"(\d+) x ", line))))
    assert row["answer"] in " ".join(lines)  # read-off questions: the answer is printed
    return row["answer"]


def _layout(row: dict[str, Any], truth: dict[str, Any]) -> str:
    tags = Counter(e["tag"] for e in truth["elements"])
    if "links" in row["question"]:
        return str(tags["a"])
    if "sidebar" in row["question"]:
        return "yes" if tags["aside"] else "no"
    assert row["answer"] in {e["text"] for e in truth["elements"]}
    return row["answer"]


CHECKS = {
    "circuit": _circuit, "table": _table, "chart": _chart, "clevr": _clevr, "math": _math,
    "flowchart": _flowchart, "natural": _natural, "text": _text, "layout": _layout,
}  # fmt: skip


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_answers_follow_from_ground_truth(dataset: tuple[str, list[dict[str, Any]]], kind: str) -> None:
    _, rows = dataset
    for row in (r for r in rows if r["image_type"] == kind):
        expected = CHECKS[kind](row, records.ground_truth(row))
        given = row["answer"]
        if row["options"]:
            given = row["options"][option_letters(row["options"]).index(row["answer"])]
        assert answers_match(given, expected), (row["question"], row["answer"], row["options"], expected)


def test_the_natural_caption_counts_the_objects(dataset: tuple[str, list[dict[str, Any]]]) -> None:
    _, rows = dataset
    words = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
    for row in (r for r in rows if r["image_type"] == "natural"):
        truth = records.ground_truth(row)
        counts = Counter(o["label"] for o in truth["objects"])
        said = {
            m.group(2): words[m.group(1)] for m in re.finditer(r"(one|two|three|four|five|six) (\w+)", truth["caption"])
        }
        plural = {"trees": "tree", "houses": "house", "cars": "car", "people": "person", "clouds": "cloud"}
        assert {plural.get(k, k): v for k, v in said.items()} == {k: v for k, v in counts.items() if k != "sun"}
        assert truth["caption"].startswith("A sunny") == (counts["sun"] > 0)


# ----------------------------------------------------------------------------- run, CLI, speed


def test_unknown_kind_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"synth\.kinds"):
        run(SynthConfig(output_uri=str(tmp_path / "x"), n=2, kinds=["circuit", "hologram"]))
    with pytest.raises(ConfigError):
        from r1ov.config import build

        build(SynthConfig, {"output_uri": str(tmp_path / "x"), "kinds": []})


def test_a_repeat_is_redrawn() -> None:
    first = generate(0, 5, "clevr")
    again = generate(0, 5, "clevr", seen={first["id"]})
    assert again["id"] != first["id"] and not again.get("reject_reason")


def test_cli_writes_default_kinds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    assert cli_main(["synth", "--out", str(out), "--n", "14", "--seed", "5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = records.read_records(str(out))
    assert summary["records"] == len(rows) == 14
    assert set(summary["kinds"]) == {"circuit", "flowchart", "table", "chart", "natural", "text", "math"}


def test_cli_kinds_clevr_yields_only_clevr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "clevr"
    assert cli_main(["synth", "--out", str(out), "--n", "12", "--seed", "1", "--kinds", "clevr"]) == 0
    assert json.loads(capsys.readouterr().out)["kinds"] == {"clevr": 12}
    rows = records.read_records(str(out))
    assert {r["image_type"] for r in rows} == {"clevr"} and {r["source"] for r in rows} == {"synthetic/clevr"}
    assert cli_main(["synth", "--out", str(out), "--n", "2", "--kinds", "nope"]) == 2


def test_generators_are_fast() -> None:
    """Thousands per minute: 450 records (50 of each kind) well inside 20 s on a shared 2-core box."""
    start = time.perf_counter()
    for index in range(450):
        kind = ALL_KINDS[index % len(ALL_KINDS)]
        GENERATORS[kind](random.Random(index), index)
    assert time.perf_counter() - start < 20
