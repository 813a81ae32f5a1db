"""The platform's MLflow users: the pipeline's and the inference endpoint's, created by the admin.

    MLFLOW_TRACKING_URI=http://mlflow:5000 MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... \\
    PIPELINE_USERNAME=r1ov-pipeline PIPELINE_PASSWORD=... \\
    python -m r1ov.registry.users PIPELINE INFERENCE

The platform chart's ``mlflow-users`` Job runs this after every install and upgrade: for each
prefix ``P`` it reads ``P_USERNAME`` and ``P_PASSWORD`` from the environment (Secrets, never argv)
and creates that user on the basic-auth server (mlflow.server.auth's AuthServiceClient, logged in as
the admin), or sets its password when it exists, so a rotated Secret takes effect on the next
upgrade. A prefix whose variables are unset is skipped (its Secret is optional). Users own what they
create (MANAGE); everything else they may READ (the server's default_permission).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger(__name__)


def ensure_user(tracking_uri: str, username: str, password: str) -> str:
    """Create ``username`` or, when it exists, set its password; returns "created" or "updated"."""
    from mlflow.exceptions import RestException
    from mlflow.server import get_app_client

    if not username or not password:
        raise ValueError("an MLflow user needs a username and a non-empty password")
    auth = get_app_client("basic-auth", tracking_uri=tracking_uri)
    try:
        auth.create_user(username, password)
        return "created"
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    auth.update_user_password(username, password)
    return "updated"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r1ov.registry.users", description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="+", help="env prefixes: P reads P_USERNAME and P_PASSWORD")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        print("MLFLOW_TRACKING_URI is not set", file=sys.stderr)
        return 2
    for prefix in args.prefixes:
        username, password = os.environ.get(f"{prefix}_USERNAME"), os.environ.get(f"{prefix}_PASSWORD")
        if not username and not password:
            log.info("%s: no %s_USERNAME/%s_PASSWORD, skipped", prefix, prefix, prefix)
            continue
        if not username or not password:
            print(f"{prefix}: set both {prefix}_USERNAME and {prefix}_PASSWORD", file=sys.stderr)
            return 2
        log.info("MLflow user %s %s", username, ensure_user(tracking_uri, username, password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
