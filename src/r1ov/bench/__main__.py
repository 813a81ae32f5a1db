"""Run benchmarks: ``python -m r1ov.bench all|NAME [--out docs/benchmarks]``."""

from __future__ import annotations

import argparse
import importlib
import logging

from r1ov.bench.report import write

# name -> module with run() -> list[Result], or with SUITES {file name: run function} (train: sft, grpo)
SUITES = {
    "records": "r1ov.bench.records_io",
    "teacher": "r1ov.bench.teacher",
    "data": "r1ov.bench.data",
    "scale": "r1ov.bench.scale",
    "train": "r1ov.bench.training",
    "upload": "r1ov.bench.upload",
    "eval": "r1ov.bench.evaluation",
    "role_play": "r1ov.bench.role_play",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m r1ov.bench")
    parser.add_argument("name", choices=["all", *SUITES], help="benchmark to run")
    parser.add_argument("--out", default="docs/benchmarks", help="where the .json and .md go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in SUITES if args.name == "all" else [args.name]:
        module = importlib.import_module(SUITES[name])
        # A module either has run() (one file named after the suite) or SUITES: file name -> run function.
        runs = getattr(module, "SUITES", None) or {name: module.run}
        for file_name, run in runs.items():
            path = write(file_name, run(), args.out, notes=module.__doc__ or "")
            logging.getLogger("r1ov.bench").info("wrote %s", path)


if __name__ == "__main__":
    main()
