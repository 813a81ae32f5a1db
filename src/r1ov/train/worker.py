"""One training process, as torchrun starts it on every node (locally or in a Kubeflow job):

    torchrun --nnodes 2 --nproc-per-node 8 ... -m r1ov.train.worker sft s3://bucket/run/train_config.json

It reads the stage's config (JSON, a local path or s3:// URI), validates it and calls the
stage's ``train``; the main process writes the summary into the output directory.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from r1ov import config, errors
from r1ov.data import storage
from r1ov.stages import resolve
from r1ov.train import remote

# stage -> (config class, "module:function" of the in-process trainer)
TRAINERS: dict[str, tuple[type, str]] = {
    "sft": (config.SFTConfig, "r1ov.train.sft:train"),
    "grpo": (config.GRPOConfig, "r1ov.train.grpo:train"),
}


def trainer(stage: str) -> Callable[[Any], dict[str, Any]]:
    """The ``train(cfg)`` function of a stage."""
    if stage not in TRAINERS:
        raise ValueError(f"unknown training stage {stage!r}; expected one of {sorted(TRAINERS)}")
    return resolve(TRAINERS[stage][1])


def load_config(stage: str, uri: str) -> Any:
    """Read and validate the stage's config from a JSON file or URI."""
    config_class = TRAINERS[stage][0]
    return config.build(config_class, json.loads(storage.read_text(uri)), name=stage)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in TRAINERS:
        print(f"usage: python -m r1ov.train.worker {{{','.join(TRAINERS)}}} CONFIG_JSON_URI", file=sys.stderr)
        return 2
    stage, uri = args
    errors.configure_worker_logging(int(os.environ.get("RANK", "0")))
    # Remote models are copied to this node first: from_pretrained cannot read s3:// itself.
    trainer(stage)(remote.localize(load_config(stage, uri)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
