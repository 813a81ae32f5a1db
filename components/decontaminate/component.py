from kfp import dsl
from kfp.dsl import Markdown, Output

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def decontaminate(
    source_uri: str, benchmarks: list, data_root: str, pipeline_root: str, run_id: str, report: Output[Markdown]
) -> str:
    """Set aside the source's rows that are evaluation items, before any teacher is paid for them.

    Args:
        source_uri: Dataset in the r1ov record schema (local path or s3://).
        benchmarks: The evaluation's benchmarks, [{"name": ..., "uri": ...}], in their published files;
            empty: nothing to compare.
        data_root: Durable root for the run's data; empty: the pipeline root.
        pipeline_root: The run's pipeline root (filled in by KFP).
        run_id: The pipeline run id (filled in by KFP).

    Returns:
        Output: The dataset to shard: the source itself without benchmarks, else its copy without the overlapping rows.
        report: Rows set aside, by source and benchmark (benchmark_overlap: <benchmark>/<item id>).
    """
    import json
    import logging

    from r1ov.data import storage
    from r1ov.data.fanout import work_uri
    from r1ov.pipeline.tasks import decontaminate_source

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not benchmarks:
        with open(report.path, "w", encoding="utf-8") as out:
            out.write("## decontamination\n\nNo benchmark given: nothing compared.\n")
        return source_uri
    output_uri = storage.join(work_uri(data_root or pipeline_root, run_id), "decontaminated")
    overlaps = decontaminate_source(source_uri, list(benchmarks), output_uri)["overlaps"]
    with open(report.path, "w", encoding="utf-8") as out:
        out.write(
            f"## decontamination\n\n{overlaps['overlaps']} of {overlaps['rows']} rows overlap a benchmark item.\n"
        )
        out.write(f"\n```json\n{json.dumps(overlaps, indent=2, sort_keys=True)}\n```\n")
    return output_uri
