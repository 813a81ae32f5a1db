"""How a data stage ends: accepted enough rows, or failed loudly with a table of reasons.

A stage that sets most rows aside (a dead teacher, a wrong model name, a broken prompt) must
stop the pipeline before anything downstream runs and before a GPU is requested, and say
why in a form a person can read at a glance.
"""

from __future__ import annotations

from typing import Any


class StageFailed(RuntimeError):
    """A data stage finished below its acceptance floor, or could not reach its teacher."""


def reason_examples(dataset_uri: str, limit: int = 1) -> dict[str, list[str]]:
    """Up to ``limit`` full reasons per reason kind, read from the rejected part."""
    from r1ov.data import records, storage

    examples: dict[str, list[str]] = {}
    for shard in storage.list_files(storage.join(dataset_uri, records.REJECTED), ".parquet"):
        column = records.read_parquet(shard, columns=["reject_reason"]).column(0)
        for reason in column.to_pylist():
            kind = (reason or "").split(":", 1)[0]
            if len(examples.setdefault(kind, [])) < limit:
                examples[kind].append(" ".join(reason.split())[:160])
    return examples


def reasons_table(manifest: dict[str, Any], examples: dict[str, list[str]] | None = None) -> str:
    """A Markdown table: reason, rows, share of all rows, one example."""
    total = manifest["records"] + manifest["rejected"]
    lines = ["| reason | rows | share | example |", "|---|---:|---:|---|"]
    lines.append(f"| accepted | {manifest['records']} | {manifest['records'] / total:.1%} | |" if total else "")
    for reason, count in sorted(manifest["reject_reasons"].items(), key=lambda kv: -kv[1]):
        example = ((examples or {}).get(reason) or [""])[0].replace("|", "\\|")
        lines.append(f"| {reason} | {count} | {count / total:.1%} | {example} |")
    return "\n".join(line for line in lines if line)


def check_floor(stage: str, output_uri: str, manifest: dict[str, Any], floor: float) -> None:
    """Raise :class:`StageFailed` when the accepted share of the input is below ``floor``."""
    total = manifest["records"] + manifest["rejected"]
    if total == 0:
        raise StageFailed(f"{stage}: the input at {output_uri} had no rows; nothing to pass downstream")
    share = manifest["records"] / total
    if share >= floor:
        return
    table = reasons_table(manifest, reason_examples(output_uri))
    worst = worst_sources(manifest)
    raise StageFailed(
        f"{stage}: {manifest['records']} of {total} rows accepted ({share:.1%}), below "
        f"min_accepted_fraction={floor}; rows set aside, by reason (details in {output_uri}):\n{table}"
        + (f"\nlowest-yield sources: {worst}" if worst else "")
    )


def worst_sources(manifest: dict[str, Any], count: int = 3) -> str:
    """The ``count`` sources that kept the least of their rows (``manifest["sources"]``, as merge
    writes it), worst first: where to look when the whole run fell short."""
    sources = manifest.get("sources") or {}
    ranked = sorted(sources.items(), key=lambda kv: (kv[1]["yield"], -kv[1]["rows"], kv[0]))[:count]
    return ", ".join(f"{name} ({s['accepted']} of {s['rows']}, {s['yield']:.0%})" for name, s in ranked)


def summary_markdown(title: str, manifest: dict[str, Any], output_uri: str) -> str:
    """A per-stage summary people read in the KFP UI: counts, reasons with an example each,
    and the teacher's bill (calls sent, cache hits, retries, tokens)."""
    lines = [f"## {title}", "", f"Output: `{output_uri}`", ""]
    lines.append(
        reasons_table(manifest, reason_examples(output_uri))
        if manifest["records"] + manifest["rejected"]
        else "No rows."
    )
    for name, stats in sorted(manifest.items()):
        if isinstance(stats, dict) and "sent" in stats:
            lines += ["", f"### {name} calls ({stats.get('model', '')})", "", "| counter | value |", "|---|---:|"]
            lines += [f"| {key} | {value} |" for key, value in stats.items() if key != "model"]
    for key in ("shards", "resumed_shards", "type_disagreements"):
        if key in manifest:
            lines.append(f"\n{key.replace('_', ' ')}: {manifest[key]}")
    return "\n".join(lines) + "\n"
