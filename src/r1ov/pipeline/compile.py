"""Compile the pipeline and every component to the YAML files that are committed.

``pipelines/r1ov.yaml`` is what `kfp run create` submits and what `r1ov demo` runs;
``components/<name>/component.yaml`` lets other pipelines reuse a stage from YAML alone.
"""

from __future__ import annotations

import importlib
import re
import shutil
import sys
import tempfile
from pathlib import Path

from kfp import compiler
from kfp.dsl.base_component import BaseComponent

PIPELINE_MODULE = "pipelines.r1ov"
PIPELINE_FUNCTION = "r1ov_pipeline"
# Lines that change with the SDK release, not with our sources: the version, and the comment header,
# a summary of the spec below it whose mapping defaults print in protobuf map order (hash-seeded).
VOLATILE = re.compile(r"^(?:[ \t]*sdkVersion:.*|#.*)(?:\n|\Z)", re.MULTILINE)


def repo_root(start: str | Path = ".") -> Path:
    """The repository root: the nearest parent with pipelines/r1ov.py."""
    path = Path(start).resolve()
    for candidate in (path, *path.parents):
        if (candidate / "pipelines" / "r1ov.py").is_file():
            return candidate
    raise FileNotFoundError(f"no pipelines/r1ov.py in {path} or its parents: run from the r1ov repository")


def _import(root: Path, module: str):
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(module)


def components(root: Path) -> dict[Path, BaseComponent]:
    """component.py path -> the component it defines (exactly one each)."""
    found = {}
    for source in sorted((root / "components").glob("*/component.py")):
        module = _import(root, f"components.{source.parent.name}.component")
        defined = [v for v in vars(module).values() if isinstance(v, BaseComponent)]
        if len(defined) != 1:
            raise ValueError(f"{source} must define exactly one component, found {len(defined)}")
        found[source] = defined[0]
    return found


def compile_all(root: str | Path = ".", dest: str | Path | None = None) -> dict[str, list[str]]:
    """Compile into the repository, or into the same relative paths under ``dest``."""
    root = repo_root(root)
    out = Path(dest) if dest else root
    targets: dict[Path, BaseComponent] = {
        source.with_name("component.yaml").relative_to(root): component
        for source, component in components(root).items()
    }
    targets[Path("pipelines", "r1ov.yaml")] = getattr(_import(root, PIPELINE_MODULE), PIPELINE_FUNCTION)
    written, unchanged = [], []
    for relative, component in targets.items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            fresh = Path(scratch, relative.name)
            compiler.Compiler().compile(component, str(fresh))
            # A recompile that differs only in volatile lines leaves the file as it is, so
            # `r1ov compile` on unchanged sources leaves a clean checkout.
            if target.is_file() and stable_text(target) == stable_text(fresh):
                unchanged.append(str(relative))
                continue
            shutil.copyfile(fresh, target)
            written.append(str(relative))
    return {"written": written, "unchanged": unchanged}


def stable_text(path: str | Path) -> str:
    """YAML text without the SDK-version lines, for golden-file comparison."""
    return VOLATILE.sub("", Path(path).read_text())
