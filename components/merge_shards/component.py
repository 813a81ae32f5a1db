from kfp import dsl
from kfp.dsl import Dataset, Markdown, Metrics, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def merge_shards(
    shard_uris: list[str],
    filtered: Output[Dataset],
    metrics: Output[Metrics],
    summary: Output[Markdown],
    min_accepted_fraction: float = 0.5,
):
    """Merge the filtered shards into one dataset: ids unique across shards, counts and reasons summed.

    Args:
        shard_uris: The shards, collected from the fan-out.
        filtered: The merged dataset (records/, rejected/, manifest.json with every stage's sums).
        metrics: Merged counts per stage.
        summary: The merged rows by reason, with the teacher bills of every stage.
        min_accepted_fraction: Fail when fewer of all rows were accepted, before training starts.
    """
    import logging

    from r1ov.fanout import merge
    from r1ov.kfp_tasks import log_metrics
    from r1ov.outcome import check_floor, summary_markdown

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manifest = merge(sorted(shard_uris), filtered.path)
    log_metrics(metrics, manifest)
    with open(summary.path, "w", encoding="utf-8") as out:
        out.write(summary_markdown(f"merged {len(shard_uris)} shards", manifest, filtered.path))
        for stage, stats in manifest["stages"].items():
            out.write(f"\n### {stage}: {stats.get('records', 0)} accepted, {stats.get('rejected', 0)} set aside\n")
    check_floor("merge", filtered.path, manifest, min_accepted_fraction)
