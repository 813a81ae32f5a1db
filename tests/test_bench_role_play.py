"""The role-play benchmark reads the published layouts of MathVista and MATH-V outputs and counts
rejections per set of chains (the real files are read by ``make bench-role_play``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1ov.bench import role_play


def _checkouts(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders in the repositories' layouts: MathVista's ``results/<model>/output_<model>.json``
    (a dict by pid, each with ``response`` and ``metadata.context``) and MATH-V's
    ``outputs/<group>/<model>.jsonl`` (one object per line with ``response``)."""
    mathvista, mathv = tmp_path / "MathVista", tmp_path / "MATH-V"
    saw = {
        "1": {"response": "The table's second row reads 12.", "metadata": {"context": "table"}},
        "2": {"response": "OCR scores 44% on the chart.", "metadata": {"context": "bar chart"}},
        "3": {"response": "According to the description, B.", "metadata": {"context": "natural image"}},
        "4": {"response": "", "metadata": {"context": "table"}},  # no response: not counted
    }
    read = {"1": {"response": "The image detected text shows 12.", "metadata": {"context": "table"}}}
    (mathvista / "results" / "m").mkdir(parents=True)
    (mathvista / "results" / "m" / "output_saw.json").write_text(json.dumps(saw))
    (mathvista / "results" / "m" / "output_read.json").write_text(json.dumps(read))
    (mathv / "outputs" / "g").mkdir(parents=True)
    lines = [{"id": "1", "response": "The graph that best matches this description is B."}]
    (mathv / "outputs" / "g" / "saw.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    (mathv / "outputs" / "g" / "read.jsonl").write_text(json.dumps({"id": "1", "response": "From the description, A."}))
    return mathvista, mathv


def test_shares_per_set_of_chains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mathvista, mathv = _checkouts(tmp_path)
    monkeypatch.setenv("R1OV_MATHVISTA_DIR", str(mathvista))
    monkeypatch.setenv("R1OV_MATHV_DIR", str(mathv))
    monkeypatch.setattr(role_play, "MATHVISTA_SAW", ["m/output_saw"])
    monkeypatch.setattr(role_play, "MATHVISTA_READ", ["m/output_read"])
    monkeypatch.setattr(role_play, "MATHV_SAW", ["g/saw"])
    monkeypatch.setattr(role_play, "MATHV_READ", ["g/read"])
    rows = {row.name.split(" (")[0]: row for row in role_play.run()}

    shows_text = rows["chains by models that saw a document, table or chart, rejected by the rule"]
    assert shows_text.value == 0.0 and shows_text.met()  # the table row and the OCR bar
    any_image = rows["chains by models that saw the image, any image, rejected by the rule"]
    assert any_image.value == 25.0 and not any_image.met()  # "according to the description": 1 of 4
    assert rows["chains by models that saw the image, sent to the judge"].value == 25.0  # the OCR bar
    read = rows["chains written from OCR text or a caption, rejected by the rule"]
    assert read.value == 100.0 and read.baseline == 50.0  # the old list missed "detected text"


def test_a_checkout_without_the_file_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R1OV_MATHVISTA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="R1OV_MATHVISTA_DIR should be a checkout of lupantech/MathVista"):
        list(role_play._mathvista(["bard/output_bard"]))


def test_without_a_checkout_or_network_it_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("R1OV_MATHV_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(role_play.urllib.request, "urlopen", offline)
    with pytest.raises(SystemExit, match="set R1OV_MATHV_DIR to a checkout of mathllm/MATH-V at a1f5cc3add20"):
        list(role_play._mathv(["closed-source/Gemini/Gemini-Pro-CoT"]))
