"""What a training process does before loading anything: bring remote inputs onto this node's disk.

``from_pretrained("s3://...")`` fails ("Repo id must be in the form..."), so a model given as a URI
(``s3://``, ``minio://``, ``gs://``, ``file://``) is copied once per node into the pod's work volume
(``$R1OV_WORK_DIR``, a declared volume in the job's pods) and loaded from there. Hugging Face ids
and local directories are used as given. Datasets need nothing: they are streamed from their URI.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from r1ov.data import storage
from r1ov.k8s import podspec

logger = logging.getLogger(__name__)

WORK_DIR_ENV = podspec.WORK_DIR_ENV  # set in the job's pods to the mount path of their work volume
READY = ".r1ov-ready"
WAIT_S = 3600.0  # how long other local ranks wait for the node's copy (a 16 GB checkpoint over a slow link)


def node_once(dest: Path, produce: Callable[[Path], None], *, wait_s: float = WAIT_S) -> Path:
    """Run ``produce(dest)`` on the first process of this node only; the others wait for its marker.

    The marker is written after ``produce`` returns, so a crash half-way leaves no marker and the
    next attempt starts over instead of using a partial copy.
    """
    marker = dest / READY
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        if not marker.exists():
            dest.mkdir(parents=True, exist_ok=True)
            produce(dest)
            marker.write_text("ok")
        return dest
    deadline = time.monotonic() + wait_s
    while not marker.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"local rank 0 did not finish preparing {dest} within {wait_s:.0f} s")
        time.sleep(0.5)
    return dest


def is_uri(value: str) -> bool:
    return "://" in value


def localize_model(uri: str, work_dir: str) -> str:
    """A local directory holding the model at ``uri`` (copied once per node); a local path or hub id as given."""
    if not is_uri(uri) or uri.startswith("file://"):
        return uri.removeprefix("file://")
    dest = Path(work_dir) / "base-model"
    logger.info("copying %s to %s", uri, dest)
    started = time.monotonic()
    node_once(dest, lambda d: storage.copy_tree(uri, str(d)))
    logger.info("model ready in %s (%.1f s)", dest, time.monotonic() - started)
    return str(dest)


def localize(cfg: Any) -> Any:
    """The config with its model path made loadable on this node."""
    work_dir = os.environ.get(WORK_DIR_ENV) or str(Path(cfg.output_dir).parent)
    local = localize_model(cfg.model_name_or_path, work_dir)
    if local == cfg.model_name_or_path:
        return cfg
    return cfg.model_copy(update={"model_name_or_path": local})
