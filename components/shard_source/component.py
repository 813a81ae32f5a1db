from kfp import dsl

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def shard_source(source_uri: str, num_shards: int, data_root: str, pipeline_root: str, run_id: str) -> list[str]:
    """Split the source dataset into shards on durable storage, one per data pod.

    Args:
        source_uri: Dataset in the r1ov record schema (local path or s3://).
        num_shards: Shards to write (fewer when the source has fewer rows).
        data_root: Durable root for shards, their stage outputs and response caches; empty: the pipeline root.
        pipeline_root: The run's pipeline root (filled in by KFP).
        run_id: The pipeline run id (filled in by KFP): shards of one run live under it.

    Returns:
        Output: The shard URIs, for dsl.ParallelFor.
    """
    import logging

    from r1ov.data.fanout import split, work_uri

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return split(source_uri, work_uri(data_root or pipeline_root, run_id), num_shards)
