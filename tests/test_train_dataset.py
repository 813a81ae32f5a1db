"""Training data per rank: nothing decoded before step 1, rows built on access, training unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import torch
import transformers
from PIL import ImageFile
from safetensors.torch import load_file
from test_train_grpo import clevr_data  # noqa: F401  (fixture)
from test_train_sft import make_records, sft_config
from transformers import AutoProcessor

from r1ov.data import imaging, records
from r1ov.train import common, dataset, grpo, sft


@pytest.fixture(scope="module")
def sixteen(tmp_path_factory: pytest.TempPathFactory) -> str:
    """16 usable records in two shards, one corrupt image and one without reasoning."""
    rows = make_records(18)
    rows[16]["image"] = b"\x89PNG\r\n\x1a\n not really a png"
    rows[17]["reasoning"] = None
    uri = str(tmp_path_factory.mktemp("sixteen") / "filtered")
    records.write_dataset(uri, rows, shard_size=9)
    return uri


def test_images_are_decoded_when_a_batch_draws_them_not_before_step_1(
    tiny_model_dir: Path, sixteen: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes: set[int] = set()  # images whose pixels were decoded (load() repeats on one image are free)
    load = ImageFile.ImageFile.load

    def counted(self: Any) -> Any:
        decodes.add(id(self))
        return load(self)

    at_first_step: list[int] = []
    training_step = transformers.Trainer.training_step

    def first(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not at_first_step:
            at_first_step.append(len(decodes))
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    monkeypatch.setattr(transformers.Trainer, "training_step", first)
    summary = sft.train(sft_config(tiny_model_dir, sixteen, tmp_path / "out", max_steps=1))

    assert summary["train_records"] == 16 and summary["skipped_reasons"] == {"bad_image": 1, "missing_reasoning": 1}
    # the one row TRL reads to see that the data holds images, the first batch's 2 images and the
    # next batch's 2, which accelerate's loader fetches ahead to know whether the first is the last
    assert at_first_step == [5], f"{at_first_step} images decoded before step 1 of 16 records"


def _in_memory_rows(uri: str, to_row: Any, required: tuple[str, ...], check: Any = None) -> dataset.TrainData:
    """The rows as training read them before: every record decoded up front, a list of rows copied into
    an in-memory dataset whose image cells hold the encoded bytes (common.load_examples/to_dataset)."""
    examples = common.load_examples(
        uri,
        lambda record, image: {
            "messages": common.sft_messages(record),
            "images": [common.image_cell(record)],
            "reasoning": record["reasoning"],  # what the stage counts tokens of after training
        },
        required,
    )
    return dataset.TrainData(rows=common.to_dataset(examples.rows), skipped=examples.skipped)


def test_training_on_lazy_rows_ends_with_the_weights_of_the_rows_built_up_front(
    tiny_model_dir: Path, sixteen: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lazy = sft.train(sft_config(tiny_model_dir, sixteen, tmp_path / "lazy", max_steps=3))
    monkeypatch.setattr(dataset, "build", _in_memory_rows)
    upfront = sft.train(sft_config(tiny_model_dir, sixteen, tmp_path / "upfront", max_steps=3))

    assert lazy["final_loss"] == upfront["final_loss"]
    assert lazy["reasoning_tokens"] == upfront["reasoning_tokens"] and lazy["reasoning_tokens"]["n"] == 16
    before = load_file(tiny_model_dir / "model.safetensors")
    new, old = load_file(tmp_path / "lazy" / "model.safetensors"), load_file(tmp_path / "upfront" / "model.safetensors")
    assert any(not torch.equal(before[name], new[name]) for name in before)  # it trained
    assert all(torch.equal(new[name], old[name]) for name in old)


def test_rows_are_built_from_the_memory_mapped_file_on_access(sixteen: str) -> None:
    built: list[str] = []

    def to_row(record: dict[str, Any], image: Any) -> dict[str, Any]:
        built.append(record["id"])
        return {"messages": common.sft_messages(record), "images": [image]}

    data = dataset.build(sixteen, to_row, required=("question", "reasoning"))
    assert built == [] and len(data.rows) == 16
    assert data.rows.with_format(None).cache_files  # backed by a file on disk, not a table in memory
    wanted = records.read_records(sixteen)[:16]  # the last two are set aside
    batch = data.rows[4:6]
    assert built == [wanted[4]["id"], wanted[5]["id"]]
    assert batch["messages"] == [common.sft_messages(wanted[4]), common.sft_messages(wanted[5])]
    assert batch["images"][0][0].tobytes() == imaging.load_image(wanted[4]).tobytes()


def test_image_bytes_are_copied_per_shard_when_a_row_of_it_is_drawn(sixteen: str) -> None:
    """The pass before step 1 copies the text only; a shard's images reach local disk with its first draw."""
    data = dataset.build(
        sixteen, lambda record, image: {"pixels": [image.tobytes()]}, required=("question", "reasoning")
    )
    folder = Path(data.folder.name)
    text_file = folder / "records.arrow"
    assert sorted(p.name for p in folder.iterdir()) == ["records.arrow"]
    with pa.ipc.open_stream(pa.OSFile(str(text_file))) as reader:
        assert "image" not in reader.schema.names
    wanted = records.read_records(sixteen)[:16]  # shard 0: rows 0-8, shard 1: rows 9-17 (16 and 17 set aside)
    assert data.rows[2]["pixels"] == [imaging.load_image(wanted[2]).tobytes()]
    assert sorted(p.name for p in folder.iterdir()) == ["images-00000.arrow", "records.arrow"]
    assert data.rows[15]["pixels"] == [imaging.load_image(wanted[15]).tobytes()]
    assert sorted(p.name for p in folder.iterdir()) == ["images-00000.arrow", "images-00001.arrow", "records.arrow"]


def test_a_shard_cut_short_after_the_pass_names_the_shard(sixteen: str, tmp_path: Path) -> None:
    import shutil

    uri = str(tmp_path / "copy")
    shutil.copytree(sixteen, uri)
    data = dataset.build(uri, lambda record, image: {"size": [image.size]}, required=("question", "reasoning"))
    second = records.shard_uris(uri)[1]
    records.write_dataset(str(tmp_path / "short"), records.read_rows(second)[:2])
    shutil.copy(records.shard_uris(str(tmp_path / "short"))[0], second)
    with pytest.raises(RuntimeError, match="fewer than when training began"):
        data.rows[14]


def test_prompt_lengths_from_headers_match_the_processor_per_prompt(tiny_model_dir: Path, clevr_data: str) -> None:  # noqa: F811
    processor = AutoProcessor.from_pretrained(tiny_model_dir, size={"shortest_edge": 3136, "longest_edge": 12544})
    rows = [r for r in records.read_records(clevr_data) if r["answer"]]
    sizes = [dataset.header_size(r["image"]) for r in rows]
    expected = [grpo.prompt_tokens(processor, common.prompt_messages(r), imaging.load_image(r)) for r in rows]
    assert len(set(expected)) > 1  # open and multiple-choice prompts differ
    assert grpo.prompt_lengths(processor, rows, sizes) == expected
