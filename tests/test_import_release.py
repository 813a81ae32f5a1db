"""The published layouts as they are: the R1-Onevision release (base64 string images in per-source
folders), LLaVA-OneVision-Data by named config, and every row that cannot be imported set aside
with its reason and location, never a traceback."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from r1ov.cli import main
from r1ov.data import records
from r1ov.data.importers import import_dataset
from r1ov.data.outcome import StageFailed

# The release's schema (https://huggingface.co/datasets/Fancy-MLLM/R1-Onevision): the image is a
# base64 *string*, the conversation a list of {from, value} structs.
RELEASE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("image", pa.string()),
        ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
    ]
)


def _encoded(seed: int, size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _row(row_id: str, image: str | None, question: str, reply: str) -> dict:
    return {
        "id": row_id,
        "image": image,
        "conversations": [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": reply}],
    }


def _release(root: Path) -> dict[str, bytes]:
    """Three source folders, one of them split over two files, as ``train-0000k-of-0000n.parquet``.
    Returns id -> the encoded image each row carries."""
    images: dict[str, bytes] = {}
    folders = {
        "ai2d": [["train-00000-of-00001.parquet", 5]],
        "Geometry3K(MathV360K)": [["train-00000-of-00002.parquet", 4], ["train-00001-of-00002.parquet", 3]],
        "llava_cot_100k_natural_scene": [["train-00000-of-00001.parquet", 4]],
    }
    seed = 0
    for folder, files in folders.items():
        (root / folder).mkdir(parents=True)
        for name, count in files:
            rows = []
            for _ in range(count):
                seed += 1
                data = _encoded(seed, fmt="JPEG" if seed % 3 == 0 else "PNG")
                text = base64.b64encode(data).decode("ascii")
                if seed % 4 == 0:  # some converters met a data-URL prefix
                    text = f"data:image/{'jpeg' if seed % 3 == 0 else 'png'};base64,{text}"
                row_id = f"{folder}-{seed}"
                images[row_id] = data
                chain = f"<think>\nLooking at the figure, item {seed}.\n</think>\n<answer>{seed}</answer>"
                rows.append(_row(row_id, text, f"What is item {seed}?", chain))
            pq.write_table(pa.Table.from_pylist(rows, schema=RELEASE_SCHEMA), root / folder / name)
    return images


def _imported(uri: Path) -> dict[str, dict]:
    return {records.metadata(r)["imported_id"]: r for r in records.read_records(str(uri))}


def test_release_layout_imports_every_row_with_the_same_pixels(tmp_path: Path) -> None:
    images = _release(tmp_path / "release")
    report = import_dataset("parquet", str(tmp_path / "release"), str(tmp_path / "records"), shard_size=5)
    rows = _imported(tmp_path / "records")
    assert sorted(rows) == sorted(images), report
    for row_id, data in images.items():
        assert np.array_equal(_pixels(rows[row_id]["image"]), _pixels(data)), row_id
        assert rows[row_id]["reasoning"].startswith("<think>")
    assert rows["ai2d-1"]["question"] == "What is item 1?" and rows["ai2d-1"]["answer"] == "1"
    assert rows["Geometry3K(MathV360K)-9"]["source"] == "import/Geometry3K(MathV360K)"
    assert report["sources"]["Geometry3K(MathV360K)"] == {"read": 7, "imported": 7}
    assert records.count_rows(str(tmp_path / "records"), records.REJECTED) == 0


def _odd_rows() -> list[dict]:
    good = base64.b64encode(_encoded(99)).decode("ascii")
    return [
        _row("fine", good, "Fine?", "yes"),
        _row("none", None, "No image?", "1"),
        _row("garbage", base64.b64encode(b"not an image at all" * 8).decode("ascii"), "Garbage?", "1"),
        _row("tiny", base64.b64encode(_encoded(1, (1, 1))).decode("ascii"), "Tiny?", "1"),
        _row("thin", base64.b64encode(_encoded(2, (2, 600))).decode("ascii"), "Thin?", "1"),
        _row("again", good, "Fine?", "yes"),
    ]


def test_unimportable_rows_are_set_aside_with_reason_and_location(tmp_path: Path) -> None:
    (tmp_path / "release" / "mixed").mkdir(parents=True)
    file = tmp_path / "release" / "mixed" / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(_odd_rows(), schema=RELEASE_SCHEMA), file)
    report = import_dataset("parquet", str(tmp_path / "release"), str(tmp_path / "records"))
    assert list(_imported(tmp_path / "records")) == ["fine"]
    assert report["skipped"] == {"no image": 1, "bad image": 3} and report["duplicates"] == 1
    aside = {
        records.metadata(r)["imported_id"]: r["reject_reason"]
        for r in records.read_records(str(tmp_path / "records"), records.REJECTED)
    }
    assert sorted(aside) == ["again", "garbage", "none", "thin", "tiny"]  # nothing lost
    assert aside["none"] == f"no image: at {file}#row=1"
    assert aside["tiny"].startswith("bad image: too small: 1x1") and aside["tiny"].endswith("#row=3")
    assert "aspect ratio 300 of 2x600 exceeds 200" in aside["thin"]
    assert aside["again"] == f"duplicate: same content as {file}#row=0 at {file}#row=5"


def test_images_are_made_trainable_where_that_is_safe(tmp_path: Path) -> None:
    def encoded(image: Image.Image, fmt: str, **kwargs) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **kwargs)
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    red = Image.new("RGB", (16, 16), (255, 0, 0))
    frames = [red, Image.new("RGB", (16, 16), (0, 0, 255))]
    rows = [
        _row("cmyk", encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "TIFF"), "Cmyk?", "red"),
        _row("palette", encoded(red.convert("P"), "PNG"), "Palette?", "red"),
        _row("la", encoded(Image.new("LA", (16, 16), (90, 255)), "PNG"), "Grey?", "grey"),
        _row("gif", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]), "Moving?", "x"),
    ]
    (tmp_path / "src" / "modes").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=RELEASE_SCHEMA), tmp_path / "src" / "modes" / "train.parquet")
    report = import_dataset("parquet", str(tmp_path / "src"), str(tmp_path / "records"))
    imported = _imported(tmp_path / "records")
    assert sorted(imported) == ["cmyk", "la", "palette"] and report["skipped"] == {"bad image": 1}
    for row_id, colour in (("cmyk", (255, 0, 0)), ("palette", (255, 0, 0)), ("la", (90, 90, 90))):
        image = Image.open(io.BytesIO(imported[row_id]["image"]))
        assert (
            image.format == "PNG" and image.mode == "RGB" and image.getpixel((3, 3))[:3] == pytest.approx(colour, abs=2)
        ), row_id
    [gif] = records.read_records(str(tmp_path / "records"), records.REJECTED)
    assert gif["reject_reason"].startswith("bad image: animated image: 2 frames")


def test_a_source_with_nothing_importable_fails_with_a_table_of_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad" / "only").mkdir(parents=True)
    rows = [_row(f"n{i}", None, "Q?", "A") for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows, schema=RELEASE_SCHEMA), tmp_path / "bad" / "only" / "train.parquet")
    (tmp_path / "bad" / "only" / "empty.parquet").write_bytes(b"")  # a 0-byte file from a broken copy
    with pytest.raises(StageFailed, match=r"nothing importable .*\n\| reason \| rows"):
        import_dataset("parquet", str(tmp_path / "bad"), str(tmp_path / "records"))
    code = main(["import", "--format", "parquet", "--source", str(tmp_path / "bad"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and "| no image | 3 |" in err and "| unreadable file | 1 |" in err
    assert "Traceback" not in err
    assert records.count_rows(str(tmp_path / "r"), records.REJECTED) == 4


def test_non_utf8_text_and_a_bad_jsonl_byte_cost_one_row(tmp_path: Path) -> None:
    good = base64.b64encode(_encoded(5)).decode("ascii")
    (tmp_path / "src" / "enc").mkdir(parents=True)
    # A string column whose bytes are not UTF-8 (written without validation, as foreign writers do).
    questions = [b"What?", b"Wh\xffat?"]
    offsets = np.array([0, 5, 11], dtype=np.int32).tobytes()
    column = pa.Array.from_buffers(pa.string(), 2, [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(questions))])
    table = pa.table({"id": ["ok", "bad"], "image": [good, good], "question": column})
    pq.write_table(table, tmp_path / "src" / "enc" / "train.parquet")
    report = import_dataset("parquet", str(tmp_path / "src"), str(tmp_path / "records"))
    assert list(_imported(tmp_path / "records")) == ["ok"]
    assert report["skipped"] == {"malformed row": 1}
    assert "column question unreadable" in report["skipped_examples"]["malformed row"][0]

    folder = tmp_path / "lines"
    folder.mkdir()
    (folder / "a.png").write_bytes(_encoded(6))
    lines = [json.dumps({"image": "a.png", "question": f"Q{i}?", "answer": "1"}).encode() for i in range(3)]
    lines[1] = lines[1].replace(b"Q1", b"Q\xff1")
    (folder / "data.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    report = import_dataset("jsonl", str(folder), str(tmp_path / "lines-records"))
    assert report["imported"] == 2 and report["skipped"] == {"malformed row": 1}
    assert report["skipped_examples"]["malformed row"][0].startswith(f"{folder / 'data.jsonl'}:2: line is not UTF-8")


def _llava_ov(root: Path) -> None:
    """LLaVA-OneVision-Data's layout: a README ``configs:`` entry per subset folder, ``image`` as
    ``{bytes, path}`` and a ``data_source`` column (lmms-lab/LLaVA-OneVision-Data README.md)."""
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "conversations": [{"from": datasets.Value("string"), "value": datasets.Value("string")}],
            "data_source": datasets.Value("string"),
        }
    )
    subsets = {"CLEVR-Math(MathV360K)": 2, "ai2d(gpt4v)": 3}
    card = ["---", "configs:"]
    for seed, (subset, count) in enumerate(subsets.items()):
        rows = {
            "id": [f"{subset}-{i}" for i in range(count)],
            "image": [{"bytes": _encoded(10 * seed + i), "path": None} for i in range(count)],
            "conversations": [
                [{"from": "human", "value": f"<image>\nQ{i}?"}, {"from": "gpt", "value": str(i)}] for i in range(count)
            ],
            "data_source": [subset] * count,
        }
        (root / subset).mkdir(parents=True)
        file = root / subset / "train-00000-of-00001.parquet"
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(file))
        card += [f"- config_name: {subset}", "  data_files:", "  - split: train", f"    path: {subset}/train-*"]
    (root / "README.md").write_text("\n".join([*card, "---", ""]), encoding="utf-8")


def test_llava_onevision_imports_by_named_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = tmp_path / "LLaVA-OneVision-Data"
    _llava_ov(hub)
    out = tmp_path / "one"
    args = ["import", "--format", "hub", "--source", str(hub), "--out", str(out)]
    assert main(args) == 2  # named configs only: say so and list them
    assert "pass --config NAME" in capsys.readouterr().err
    assert main([*args, "--config", "ai2d(gpt4v)"]) == 0
    rows = _imported(out)
    assert sorted(rows) == ["ai2d(gpt4v)-0", "ai2d(gpt4v)-1", "ai2d(gpt4v)-2"]
    assert rows["ai2d(gpt4v)-1"]["source"] == "import/ai2d(gpt4v)" and rows["ai2d(gpt4v)-1"]["answer"] == "1"
    assert records.metadata(rows["ai2d(gpt4v)-1"])["data_source"] == "ai2d(gpt4v)"
    assert np.array_equal(_pixels(rows["ai2d(gpt4v)-2"]["image"]), _pixels(_encoded(12)))
    capsys.readouterr()
    assert main([*args[:-1], str(tmp_path / "all"), "--config", "all"]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == 5
    # The same folders read as Parquet, one subset by name.
    report = import_dataset("parquet", str(hub), str(tmp_path / "pq"), configs=["CLEVR-Math(MathV360K)"])
    assert report["imported"] == 2 and list(report["sources"]) == ["CLEVR-Math(MathV360K)"]


def test_sharegpt_export_never_writes_one_image_over_another(tmp_path: Path) -> None:
    from r1ov.data.exporters import export_dataset

    rows = []
    for seed in (1, 2):  # two rows under one id, as a dataset merged from two runs can hold
        row = records.new_record(source="t", question="Same?", image_type="chart", image=_encoded(seed))
        row.update(id="same-id", reasoning=f"<think>look {seed}</think><answer>{seed}</answer>")
        rows.append(row)
    records.write_dataset(str(tmp_path / "data"), rows)
    result = export_dataset("sharegpt", str(tmp_path / "data"), str(tmp_path / "lf"))
    examples = json.loads((tmp_path / "lf" / "r1ov.json").read_text())
    assert result["examples"] == 2 and len({e["images"][0] for e in examples}) == 2
    for example, seed in zip(examples, (1, 2), strict=True):
        stored = (tmp_path / "lf" / example["images"][0]).read_bytes()
        assert np.array_equal(_pixels(stored), _pixels(_encoded(seed)))


def test_a_large_file_streams_in_constant_memory(tmp_path: Path) -> None:
    """Memory while reading stays near one batch, not the file: a 24 MB file of 24 row groups (pyarrow's
    default pre-buffering held all of it: 29 MB; streamed, 6 MB whatever the file size)."""
    from r1ov.data.importers import _parquet_rows

    (tmp_path / "big" / "src").mkdir(parents=True)
    file = tmp_path / "big" / "src" / "train-00000-of-00001.parquet"
    rng = np.random.default_rng(0)
    schema = pa.schema([("id", pa.string()), ("image", pa.string())])
    with pq.ParquetWriter(file, schema, compression="none") as writer:
        for group in range(24):  # incompressible 64 KB strings, 16 per row group of 1 MB
            text = [base64.b64encode(rng.bytes(48 << 10)).decode("ascii") for _ in range(16)]
            writer.write_table(pa.table({"id": [f"{group}-{i}" for i in range(16)], "image": text}, schema=schema))
    start = pa.total_allocated_bytes()
    peak, rows = 0, 0
    for _ in _parquet_rows(str(tmp_path / "big")):
        rows += 1
        peak = max(peak, pa.total_allocated_bytes() - start)
    assert rows == 24 * 16 and peak < 12 << 20, (
        f"{peak >> 20} MB held while reading a {file.stat().st_size >> 20} MB file"
    )


def test_a_long_path_made_of_base64_letters_is_read_as_a_path(tmp_path: Path) -> None:
    """'images/...' strings can be valid base64; decoded, they are no image, so they are paths."""
    name = "images/" + "a1b2c3d4" * 9  # 79 characters, all in the base64 alphabet
    (tmp_path / "src" / "images").mkdir(parents=True)
    (tmp_path / "src" / name).write_bytes(_encoded(3))
    rows = [_row("p", name, "Path?", "1")]
    pq.write_table(pa.Table.from_pylist(rows, schema=RELEASE_SCHEMA), tmp_path / "src" / "train.parquet")
    import_dataset("parquet", str(tmp_path / "src"), str(tmp_path / "records"))
    assert np.array_equal(_pixels(_imported(tmp_path / "records")["p"]["image"]), _pixels(_encoded(3)))
