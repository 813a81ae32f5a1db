"""Each image's trainer stack builds every stage's trainer settings.

The train image holds constraints.txt (this environment). The vLLM image, where the GRPO trainer
and the rollout servers run, holds vLLM's own older transformers: images/stack-vllm.txt. Here a
virtual environment layers that stack over this one (the same TRL, accelerate and torch; the
image's transformers, tokenizers and huggingface_hub), and tests/trainer_stack_probe.py builds
the settings there through the production functions, as a worker in that image would.

Not modelled: vLLM itself (no GPU here; the rollout client's signature is checked instead) and
torch (2.13 in the vLLM image, this environment's torch here; transformers' settings do not
depend on it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from test_images import _pypi_reachable

ROOT = Path(__file__).resolve().parents[1]
STACK_VLLM = ROOT / "images" / "stack-vllm.txt"
PROBE = ROOT / "tests" / "trainer_stack_probe.py"


def pins(path: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9][\w.\-]*)==(\S+)", path.read_text(), re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in found}


@pytest.fixture(scope="module")
def vllm_stack_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python whose transformers, tokenizers and huggingface_hub are the vLLM image's, the rest
    (TRL, accelerate, torch, r1ov's dependencies) this environment's."""
    venv = tmp_path_factory.mktemp("vllm-stack") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # This environment's packages after the layer's own (a .pth line is appended to sys.path).
    Path(site, "r1ov-base.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--requirement", str(STACK_VLLM)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if install.returncode != 0:
        if not _pypi_reachable():
            pytest.skip("no package index reachable: the vLLM image's stack cannot be installed here")
        pytest.fail(f"installing {STACK_VLLM.name} failed:\n{install.stderr[-2000:]}")
    return python


def _probe(python: Path, tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [str(python), str(PROBE), str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_every_setting_arrives(report: dict) -> None:
    assert report["stages"].keys() == {"sft", "grpo-vllm-server", "grpo-hf"}
    for stage, built in report["stages"].items():
        assert built["dropped"] == [], f"{stage}: settings this stack's trainer would not receive"
        assert built["mismatched"] == [], f"{stage}: settings that arrived changed"
    assert report["vllm_client_parameters"] == ["base_url", "connection_timeout", "group_port"]


def test_the_train_images_stack_takes_every_setting(tmp_path: Path) -> None:
    report = _probe(Path(sys.executable), tmp_path)
    constraints = pins(ROOT / "constraints.txt")
    assert report["transformers"] == constraints["transformers"] and report["trl"] == constraints["trl"]
    _assert_every_setting_arrives(report)
    assert all(built["renamed"] == {} for built in report["stages"].values())


@pytest.mark.slow
def test_the_vllm_images_stack_takes_every_setting(vllm_stack_python: Path, tmp_path: Path) -> None:
    report = _probe(vllm_stack_python, tmp_path)
    assert report["transformers"] == pins(STACK_VLLM)["transformers"]
    assert report["trl"] == pins(ROOT / "images" / "requirements-vllm.txt")["trl"]
    _assert_every_setting_arrives(report)
    # transformers 5.17 calls activation checkpointing by its older name: it arrives under that name
    for built in report["stages"].values():
        assert built["renamed"] == {"activation_checkpointing": "gradient_checkpointing"}


def test_the_vllm_images_trainer_stack_differs_only_where_vllm_requires_it() -> None:
    stack, constraints = pins(STACK_VLLM), pins(ROOT / "constraints.txt")
    assert set(stack) == {"transformers", "tokenizers", "huggingface-hub"}
    assert all(name in constraints for name in stack)
    # TRL and the rest of the trainer come from requirements-vllm.txt at the train image's pins
    assert pins(ROOT / "images" / "requirements-vllm.txt")["trl"] == constraints["trl"]
