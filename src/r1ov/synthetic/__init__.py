"""Seeded synthetic records with ground truth, one generator per image type.

    r1ov synth --out data/train --n 64 --seed 0
    r1ov synth --out data/clevr --n 256 --seed 1 --kinds clevr

Record ``i`` is drawn by ``cfg.kinds[i % len(cfg.kinds)]`` from its own RNG, seeded by
(seed, i, kind), so a run is byte-for-byte reproducible and a longer run extends a shorter
one. Every question is computed from the record's ``ground_truth`` (docs/ground-truth.md).
:mod:`oracle` and :mod:`offline_teacher` answer teacher prompts from that ground truth.

Offline only: production code never imports this package; the demo, the CLI's offline
commands, the benchmarks and the tests do. It may import any library package below the pipeline.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from r1ov.config import ConfigError, SynthConfig
from r1ov.data import records
from r1ov.synthetic import chart, circuit, clevr, document, flowchart, geometry, layout, natural, table

log = logging.getLogger(__name__)

# (rng, index) -> record: every choice comes from rng; index is the record's position in the run.
Generator = Callable[[random.Random, int], dict[str, Any]]

GENERATORS: dict[str, Generator] = {
    "circuit": circuit.generate,
    "flowchart": flowchart.generate,
    "table": table.generate,
    "chart": chart.generate,
    "natural": natural.generate,
    "text": document.generate,
    "math": geometry.generate,
    "clevr": clevr.generate,
    "layout": layout.generate,
}

# Redraws allowed when a record repeats an earlier one (same question and image bytes).
MAX_REDRAWS = 20


def record_rng(seed: int, index: int, kind: str, attempt: int = 0) -> random.Random:
    """The RNG of one record; string seeds hash with SHA-512, so they are stable across runs."""
    return random.Random(f"r1ov-synth:{seed}:{index}:{kind}:{attempt}")


def generate(seed: int, index: int, kind: str, seen: set[str] | None = None) -> dict[str, Any]:
    """Record ``index`` of kind ``kind``; redrawn while its id is in ``seen``.

    After :data:`MAX_REDRAWS` redraws the last duplicate is returned with a ``reject_reason``.
    """
    seen = seen if seen is not None else set()
    for attempt in range(MAX_REDRAWS + 1):
        record = GENERATORS[kind](record_rng(seed, index, kind, attempt), index)
        if record["id"] not in seen:
            return record
    return records.reject(
        record, f"duplicate: {kind} record {index} repeats an earlier one after {MAX_REDRAWS} redraws"
    )


def run(cfg: SynthConfig) -> dict[str, Any]:
    """Write ``cfg.n`` seeded records to ``cfg.output_uri``; returns counts per kind."""
    unknown = [k for k in cfg.kinds if k not in GENERATORS]
    if unknown or not cfg.kinds:
        raise ConfigError(f"synth.kinds: unknown generator(s) {unknown}; expected some of {sorted(GENERATORS)}")
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index in range(cfg.n):
        kind = cfg.kinds[index % len(cfg.kinds)]
        record = generate(cfg.seed, index, kind, seen)
        (rejected if record.get("reject_reason") else accepted).append(record)
        seen.add(record["id"])
        if (index + 1) % 1000 == 0:
            log.info("synth: %d/%d records", index + 1, cfg.n)
    per_kind = Counter(r["image_type"] for r in accepted)
    extra = {"generator": "r1ov.synthetic", "seed": cfg.seed, "kinds": dict(sorted(per_kind.items()))}
    manifest = records.write_dataset(cfg.output_uri, accepted, rejected, shard_size=cfg.shard_size, extra=extra)
    log.info("synth: wrote %d records (%d rejected) to %s", manifest["records"], manifest["rejected"], cfg.output_uri)
    return {
        "output_uri": cfg.output_uri,
        "records": manifest["records"],
        "rejected": manifest["rejected"],
        "seed": cfg.seed,
        "kinds": dict(sorted(per_kind.items())),
    }


__all__ = ["GENERATORS", "generate", "record_rng", "run"]
