"""Submit the compiled pipeline to Kubeflow Pipelines as the run's own service account.

``kfp run create`` has no service-account flag, so its runs use the namespace's default
(``default-editor`` in a Kubeflow profile, ``pipeline-runner`` standalone). This is the same
submission through ``kfp.Client`` with ``service_account=`` set to the account the platform
chart creates and binds (``r1ov-pipeline``). Arguments are ``key=value`` strings decoded exactly
as the KFP CLI decodes them, so one command line works with both.

    r1ov submit -e r1ov -f pipelines/r1ov.yaml source_uri=s3://... benchmarks='[{...}]' ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from r1ov.config import ConfigError

SERVICE_ACCOUNT = "r1ov-pipeline"  # charts/r1ov-platform serviceAccount.name


@dataclass
class Submission:
    """One run to create; ``endpoint`` None means KF_PIPELINES_ENDPOINT (as the KFP CLI)."""

    package: str = "pipelines/r1ov.yaml"
    experiment: str = "r1ov"
    run_name: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    endpoint: str | None = None
    namespace: str | None = None
    service_account: str = SERVICE_ACCOUNT


def parse_arguments(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings -> values, decoded like ``kfp run create`` (JSON first, then text)."""
    from kfp.cli.utils.parsing import parse_parameter_value

    arguments = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"argument {pair!r} is not key=value")
        arguments[key] = parse_parameter_value(value)
    return arguments


def _reason(exc: Exception) -> str:
    import json

    try:
        return json.loads(exc.body)["message"]  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError, KeyError):
        return str(exc).strip().splitlines()[0]


def submit(submission: Submission) -> dict[str, str]:
    """Create the run; returns its id and the service account it runs as."""
    import kfp
    import urllib3
    from kfp_server_api.exceptions import ApiException

    endpoint = submission.endpoint or os.environ.get("KF_PIPELINES_ENDPOINT")
    if not endpoint:
        raise ConfigError("no KFP endpoint: pass --endpoint URL or set KF_PIPELINES_ENDPOINT (as for `kfp run create`)")
    try:
        client = kfp.Client(host=endpoint, namespace=submission.namespace or "kubeflow")
        result = client.create_run_from_pipeline_package(
            submission.package,
            arguments=submission.arguments,
            run_name=submission.run_name,
            experiment_name=submission.experiment,
            namespace=submission.namespace,
            service_account=submission.service_account,
        )
    except ApiException as exc:  # the server's reason, not the client's traceback
        raise ConfigError(f"the KFP API refused the run ({exc.status}): {_reason(exc)}") from exc
    except (urllib3.exceptions.HTTPError, OSError, RuntimeError) as exc:
        raise ConfigError(f"cannot reach the KFP API at {endpoint}: {str(exc).splitlines()[0]}") from exc
    return {"run_id": result.run_id, "service_account": submission.service_account}
