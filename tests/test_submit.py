"""The README's submit, as a platform team types it, against a stand-in of the KFP v2beta1 API.

The command is read from README.md and run as a subprocess with the real ``kfp`` CLI; the
stand-in (r1ov.testing.kfp_api) refuses any argument whose JSON type differs from the type the
compiled pipeline declares, as the KFP API server does.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from r1ov.pipeline.compile import repo_root
from r1ov.testing.kfp_api import KfpApiServer, Refused, check_parameters

ROOT = repo_root(Path(__file__).parent)
PIPELINE = ROOT / "pipelines" / "r1ov.yaml"
KFP = Path(sys.executable).with_name("kfp")


def readme_submit_command() -> list[str]:
    """The `kfp run create ...` command of the README's cluster section, as argv."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^\s*(kfp run create .*?)(?<!\\)\n", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no `kfp run create` command"
    return shlex.split(match.group(1).replace("\\\n", " "))


def _env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    # HOME apart: the KFP client reads and writes ~/.config/kfp/context.json.
    return {**os.environ, "HOME": str(tmp_path), "KF_PIPELINES_ENDPOINT": endpoint, "PYTHONWARNINGS": "ignore"}


def _run(argv: list[str], tmp_path: Path, endpoint: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=_env(tmp_path, endpoint), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("verb", ["create", "submit"])  # `kfp run submit` is the deprecated alias the README names
def test_readme_kfp_run_create_is_accepted(tmp_path: Path, verb: str) -> None:
    argv = readme_submit_command()
    assert argv[:3] == ["kfp", "run", "create"] and "-f" in argv
    with KfpApiServer() as api:
        done = _run([str(KFP), "run", verb, *argv[3:]], tmp_path, api.url)
        assert done.returncode == 0, f"refused: {api.refusals}\n{done.stderr[-2000:]}"
        (run,) = api.runs.values()
    sent = run["runtime_config"]["parameters"]
    assert isinstance(sent["benchmarks"], list) and sent["benchmarks"][0]["name"] == "mathvista"
    assert sent["nnodes"] == 2 and sent["namespace"] == "r1ov"


def test_the_stand_in_refuses_what_the_server_refuses() -> None:
    """The README's arguments against the old declaration (benchmarks STRING) fail; so does the reverse."""
    spec = yaml.safe_load(PIPELINE.read_text().split("\n---\n")[0])
    params = spec["root"]["inputDefinitions"]["parameters"]
    required = {
        name: [] if p["parameterType"] == "LIST" else "x" for name, p in params.items() if "defaultValue" not in p
    }
    check_parameters(spec, required)
    params["benchmarks"]["parameterType"] = "STRING"
    with pytest.raises(Refused, match="benchmarks requires type STRING, but got list"):
        check_parameters(spec, {**required, "benchmarks": [{"name": "mathvista"}]})
    params["benchmarks"]["parameterType"] = "LIST"
    with pytest.raises(Refused, match="requires type NUMBER_INTEGER"):
        check_parameters(spec, {**required, "nnodes": "2"})
    with pytest.raises(Refused, match="requires type STRUCT"):
        check_parameters(spec, {**required, "sft_extra_config": "save_steps: 100"})
    with pytest.raises(Refused, match="missing required"):
        check_parameters(spec, {})
    with pytest.raises(Refused, match="unknown input parameter"):
        check_parameters(spec, {**required, "nnode": 2})


def test_r1ov_submit_sets_the_service_account(tmp_path: Path) -> None:
    argv = readme_submit_command()
    with KfpApiServer() as api:
        done = _run([str(KFP.with_name("r1ov")), "submit", *argv[3:]], tmp_path, api.url)
        assert done.returncode == 0, f"refused: {api.refusals}\n{done.stderr[-2000:]}"
        (run,) = api.runs.values()
        assert run["service_account"] == "r1ov-pipeline"
        assert run["runtime_config"]["parameters"]["benchmarks"][0]["uri"].startswith("s3://")

        refused = _run([str(KFP.with_name("r1ov")), "submit", *argv[3:], "nnodes=two"], tmp_path, api.url)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "nnodes requires type NUMBER_INTEGER" in refused.stderr


def test_r1ov_submit_without_an_endpoint_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in _env(tmp_path, "").items() if k != "KF_PIPELINES_ENDPOINT"}
    done = subprocess.run(
        [str(KFP.with_name("r1ov")), "submit", "source_uri=s3://b/d"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no KFP endpoint: pass --endpoint URL or set KF_PIPELINES_ENDPOINT" in done.stderr
