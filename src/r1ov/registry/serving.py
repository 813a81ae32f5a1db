"""The inference endpoint's two helpers: fetch the registered model once, check what is served.

The r1ov-inference chart runs both from the r1ov base image:

    python -m r1ov.registry.serving fetch --model-uri models:/NAME@champion --cache-dir /models \
        --path-file /run/r1ov/model-path
    python -m r1ov.registry.serving check --endpoint http://... --served-model-name NAME \
        --model-uri models:/NAME@champion

With KServe, the chart's ClusterStorageContainer runs ``fetch`` as the storage initializer, with
``/mnt/models`` as the cache directory.

``fetch`` resolves an alias to its version and keeps one copy per version under
``<cache-dir>/<name>/<version>``: replicas sharing a volume (a ReadWriteMany claim) download a
version once. No two writers share a path: each download goes to a directory of its own and is
renamed into place atomically; a replica that loses the race discards its copy and uses the
winner's. ``check`` (the ``helm test``) fails unless the endpoint refuses a request without the API key,
then asks it which model directory it serves and fails unless it is the version the alias resolves
to now.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

COMPLETE = ".r1ov-complete"  # written last: a directory without it is never served


class ServingError(Exception):
    """A model that cannot be resolved, or an endpoint that serves something else."""


# The version promotion (or rollback) wrote on the serving pods' template, exposed to the download
# by the downward API (charts/r1ov-inference: fieldRef metadata.annotations['r1ov.io/model-version']).
# When set it wins over the alias, so the pods serve what their template names: a rolled-back
# template (`kubectl rollout undo`) serves the earlier version again.
VERSION_ENV = "R1OV_MODEL_VERSION"


def pinned(model_uri: str, template_version: str | None) -> str:
    """``models:/NAME@ALIAS`` as ``models:/NAME/<template_version>`` when the template names one."""
    if not template_version:
        return model_uri
    if not template_version.isdigit():
        raise ServingError(f"{VERSION_ENV}={template_version!r}: expected a numeric model version")
    parsed = urlparse(model_uri)
    ref = (parsed.netloc + parsed.path).strip("/")
    if parsed.scheme != "models" or "@" not in ref:
        return model_uri  # a pinned models:/NAME/VERSION stays what the chart says
    return f"models:/{ref.split('@', 1)[0]}/{template_version}"


def resolve(model_uri: str) -> tuple[str, str]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, version), through the registry."""
    parsed = urlparse(model_uri)
    if parsed.scheme != "models" or not parsed.path.strip("/"):
        raise ServingError(f"{model_uri!r} is not a models:/NAME@ALIAS or models:/NAME/VERSION URI")
    ref = (parsed.netloc + parsed.path).strip("/")
    if "@" in ref:
        from mlflow import MlflowClient

        name, alias = ref.split("@", 1)
        return name, str(MlflowClient().get_model_version_by_alias(name, alias).version)
    name, _, version = ref.rpartition("/")
    if not name or not version.isdigit():
        raise ServingError(f"{model_uri!r}: expected models:/NAME/VERSION with a numeric version")
    return name, version


def fetch(model_uri: str, cache_dir: Path, template_version: str | None = None) -> Path:
    """The local directory of the resolved version (the template's version, when it names one),
    downloaded unless a complete copy is there."""
    import mlflow

    name, version = resolve(pinned(model_uri, template_version))
    target = cache_dir / name / version
    if (target / COMPLETE).is_file():
        log.info("models:/%s/%s is cached at %s", name, version, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))  # this replica's own path
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(staging))
        (staging / COMPLETE).write_text(json.dumps({"name": name, "version": version, "source": model_uri}))
        try:
            os.rename(staging, target)  # atomic on one filesystem; fails if another replica won
            log.info("downloaded models:/%s/%s to %s", name, version, target)
        except OSError:
            if not (target / COMPLETE).is_file():
                raise
            log.info("models:/%s/%s arrived from another replica meanwhile", name, version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def refuses_without_key(endpoint: str) -> bool:
    """True when ``/v1/models`` answers 401 to a request without a key, as vLLM's OpenAI server does
    under ``--api-key``/``VLLM_API_KEY`` (its AuthenticationMiddleware in vllm/entrypoints answers
    401 "Unauthorized" to every guarded route without a matching bearer token)."""
    try:
        with urllib.request.urlopen(endpoint.rstrip("/") + "/v1/models", timeout=30):
            return False
    except urllib.error.HTTPError as exc:
        return exc.code == 401


def served(endpoint: str, api_key: str, served_model_name: str) -> str:
    """The model directory the endpoint reports as ``root`` of ``served_model_name``."""
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/v1/models", headers={"Authorization": f"Bearer {api_key}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        models = {m["id"]: m for m in json.load(response)["data"]}
    if served_model_name not in models:
        raise ServingError(f"the endpoint serves {sorted(models)}, not {served_model_name!r}")
    return models[served_model_name].get("root") or ""


def check(
    endpoint: str, api_key: str, served_model_name: str, model_uri: str, wait_seconds: float = 0,
    poll_seconds: float = 10,
) -> str:  # fmt: skip
    """Raise unless the endpoint refuses a request without the key and serves ``served_model_name``
    from the version ``model_uri`` resolves to. A rollout in progress (an earlier version served, or
    no replica answering yet) is waited for up to ``wait_seconds``; an open endpoint, a refused key
    or another model name fail at once."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if not refuses_without_key(endpoint):
                raise ServingError(f"{endpoint} answers /v1/models without the API key")
            root = served(endpoint, api_key, served_model_name)
            name, version = resolve(model_uri)
            if Path(root).parts[-2:] == (name, version):
                return f"{served_model_name} serves models:/{name}/{version}"
            problem = f"{model_uri} is version {version}, but the endpoint serves {root!r}"
        except urllib.error.HTTPError:
            raise  # 401 with the key, or an error page: no rollout fixes that
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            problem = f"{endpoint} does not answer: {exc}"  # no ready replica behind the Service yet
        if time.monotonic() + poll_seconds > deadline:
            raise ServingError(problem + (f" (waited {wait_seconds:.0f} s for the rollout)" if wait_seconds else ""))
        log.info("%s; checking again in %.0f s", problem, poll_seconds)
        time.sleep(poll_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r1ov.registry.serving", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_ = sub.add_parser("fetch", help="download the model version once into the cache")
    fetch_.add_argument("--model-uri", required=True)
    fetch_.add_argument("--cache-dir", required=True, type=Path)
    fetch_.add_argument("--path-file", required=True, type=Path, help="where to write the served directory")
    check_ = sub.add_parser("check", help="fail unless the endpoint serves the alias's version")
    check_.add_argument("--endpoint", required=True)
    check_.add_argument("--served-model-name", required=True)
    check_.add_argument("--model-uri", required=True)
    check_.add_argument("--wait-seconds", type=float, default=0, help="how long a rollout in progress is waited for")
    check_.add_argument("--poll-seconds", type=float, default=10, help="pause between checks while waiting")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from mlflow.exceptions import MlflowException

    try:
        if args.command == "fetch":
            path = fetch(args.model_uri, args.cache_dir, os.environ.get(VERSION_ENV) or None)
            args.path_file.parent.mkdir(parents=True, exist_ok=True)
            args.path_file.write_text(str(path))
            print(path)
        else:
            key = os.environ.get("API_KEY", "")
            print(
                check(args.endpoint, key, args.served_model_name, args.model_uri, args.wait_seconds, args.poll_seconds)
            )
    except (ServingError, OSError, MlflowException) as exc:
        print(f"r1ov.registry.serving {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
