"""Datasets in and out: the R1-Onevision / LLaVA-OneVision Parquet layout, images + JSONL and a
hub-style folder read through ``datasets`` into records (with a skip report); records out as
TRL messages and LLaMA-Factory ShareGPT, read back with the libraries' own readers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from r1ov.cli import main
from r1ov.data import records
from r1ov.data.exporters import export_dataset
from r1ov.data.importers import import_dataset


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _conversation(question: str, reply: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": reply}]


def _release(root: Path) -> Path:
    """Two source folders in the release's layout, with rows that must be skipped."""
    chain = "<think>\nThe bar for 2021 is the tallest.\n</think>\n<answer>B</answer>"
    ai2d = [
        {
            "id": "a1",
            "image": {"bytes": _png((255, 0, 0)), "path": None},
            "conversations": _conversation("Which?", chain),
        },
        {
            "id": "a2",
            "image": {"bytes": _png((0, 255, 0)), "path": None},
            "conversations": _conversation("Count?", "3"),
        },
        {"id": "a3", "image": None, "conversations": _conversation("No image?", "1")},
        {
            "id": "a4",
            "image": {"bytes": _png((0, 0, 255)), "path": None},
            "conversations": [{"from": "gpt", "value": "x"}],
        },
        {
            "id": "a1-again",
            "image": {"bytes": _png((255, 0, 0)), "path": None},
            "conversations": _conversation("Which?", chain),
        },
    ]
    (root / "ai2d").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ai2d), root / "ai2d" / "train-00000-of-00001.parquet")
    chat = [{"role": "user", "content": "What?"}, {"role": "assistant", "content": "A"}]
    scenes = [
        {"id": "n1", "images": [_png((9, 9, 9))], "messages": chat},
        {"id": "n2", "images": [_png((1, 1, 1)), _png((2, 2, 2))], "messages": chat[:1]},
    ]
    (root / "llava_cot_natural_scene").mkdir()
    pq.write_table(pa.Table.from_pylist(scenes), root / "llava_cot_natural_scene" / "train-00000-of-00001.parquet")
    return root


def test_import_release_layout_with_skip_report(tmp_path: Path) -> None:
    report = import_dataset("parquet", str(_release(tmp_path / "release")), str(tmp_path / "records"))
    assert report["read"] == 7 and report["imported"] == 3 and report["duplicates"] == 1
    assert report["skipped"] == {"no image": 1, "no question": 1, "multiple images": 1}
    assert all(":" in e for examples in report["skipped_examples"].values() for e in examples)
    rows = {records.metadata(r)["imported_id"]: r for r in records.read_records(str(tmp_path / "records"))}
    assert rows["a1"]["question"] == "Which?" and rows["a1"]["answer"] == "B"
    assert rows["a1"]["reasoning"].startswith("<think>") and rows["a1"]["predicted_answer"] == "B"
    assert rows["a2"]["answer"] == "3" and rows["a2"]["reasoning"] is None
    assert rows["n1"]["source"] == "import/llava_cot_natural_scene" and rows["n1"]["image_type"] == "unknown"
    assert json.loads((tmp_path / "records" / "import_report.json").read_text()) == report


def test_import_images_and_jsonl(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "a.png").write_bytes(_png((5, 5, 5)))
    lines = [
        {"image": "images/a.png", "question": "How many?", "answer": "4", "image_type": "chart", "options": ["3", "4"]},
        {"image": "images/missing.png", "question": "Lost?", "answer": "x"},
    ]
    (folder / "data.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n")
    report = import_dataset("jsonl", str(folder), str(tmp_path / "records"))
    assert report["imported"] == 1 and report["skipped"] == {"image unreadable": 1, "malformed row": 1}
    [row] = records.read_records(str(tmp_path / "records"))
    assert row["image_type"] == "chart" and row["options"] == ["3", "4"] and row["image"] == _png((5, 5, 5))


def test_import_through_datasets_from_a_hub_style_folder(tmp_path: Path) -> None:
    import datasets

    hub = tmp_path / "Fancy-MLLM" / "mirror"
    rows = {"image": [{"bytes": _png((3, 4, 5)), "path": None}], "conversations": [_conversation("Q?", "7")]}
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "conversations": [{"from": datasets.Value("string"), "value": datasets.Value("string")}],
        }
    )
    (hub / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(hub / "data" / "train-00000-of-00001.parquet"))
    report = import_dataset("hub", str(hub), str(tmp_path / "records"))
    assert report["imported"] == 1, report
    [row] = records.read_records(str(tmp_path / "records"))
    assert row["image"] == _png((3, 4, 5)) and row["answer"] == "7"


@pytest.fixture
def distilled(tmp_path: Path) -> str:
    uri = str(tmp_path / "distilled")
    rows = []
    for i, color in enumerate([(200, 0, 0), (0, 200, 0)]):
        row = records.new_record(
            source="t", question=f"Q{i}?", image_type="chart", image=_png(color), options=["a", "b"]
        )
        row["reasoning"] = f"<think>step {i}</think><answer>A</answer>"
        rows.append(row)
    rows.append(records.new_record(source="t", question="no chain", image_type="chart", image=_png((1, 2, 3))))
    records.write_dataset(uri, rows)
    return uri


def test_export_trl_reads_back_with_datasets(distilled: str, tmp_path: Path) -> None:
    import datasets

    result = export_dataset("trl", distilled, str(tmp_path / "trl"))
    assert result["examples"] == 2 and result["skipped"] == {"no reasoning": 1}
    data = datasets.load_dataset("parquet", data_files=result["files"][0], split="train")
    first = data[0]
    assert first["messages"][0]["role"] == "user" and first["messages"][0]["content"][0]["type"] == "image"
    assert "Q0?" in first["messages"][0]["content"][1]["text"]
    assert first["messages"][1]["content"][0]["text"].startswith("<think>step 0")
    assert first["images"][0].size == (12, 10)


def test_export_sharegpt_with_dataset_info(distilled: str, tmp_path: Path) -> None:
    out = tmp_path / "lf"
    assert main(["export", "--format", "sharegpt", "--data", distilled, "--out", str(out), "--name", "r1ov_sft"]) == 0
    examples = json.loads((out / "r1ov_sft.json").read_text())
    info = json.loads((out / "dataset_info.json").read_text())["r1ov_sft"]
    assert info["file_name"] == "r1ov_sft.json" and info["formatting"] == "sharegpt"
    assert info["columns"] == {"messages": "messages", "images": "images"}
    assert len(examples) == 2 and examples[0]["messages"][0]["content"].startswith("<image>")
    assert all((out / path).is_file() for example in examples for path in example["images"])


def test_cli_import_and_a_clear_line_for_a_wrong_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _release(tmp_path / "release")
    assert main(["import", "--format", "parquet", "--source", str(source), "--out", str(tmp_path / "r")]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == 3
    assert main(["import", "--format", "csv", "--source", str(source), "--out", str(tmp_path / "r")]) == 2
    assert "unknown import format 'csv'" in capsys.readouterr().err


def test_import_release_layout_from_s3(s3_endpoint: str, tmp_path: Path) -> None:
    from r1ov.data import storage

    local = _release(tmp_path / "release")
    for path in local.rglob("*.parquet"):
        storage.write_bytes(f"s3://r1ov/release/{path.relative_to(local)}", path.read_bytes())
    report = import_dataset("parquet", "s3://r1ov/release", "s3://r1ov/imported")
    assert report["imported"] == 3 and report["skipped"] == {"no image": 1, "no question": 1, "multiple images": 1}
    assert len(records.read_records("s3://r1ov/imported")) == 3
