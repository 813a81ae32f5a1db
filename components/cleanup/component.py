from kfp import dsl

from components._image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def cleanup(run_id: str, launcher: str = "pytorchjob", namespace: str = "r1ov") -> str:
    """Exit handler: delete the training jobs and rollout servers a run launched and left behind.

    Args:
        run_id: Pipeline run id; launched objects carry it in the label r1ov.io/pipeline-run.
        launcher: The run's training launcher; nothing to do for local.
        namespace: Namespace the run launched objects in.

    Returns:
        Output: JSON list of the deleted objects (kind/name).
    """
    import json

    from r1ov.kfp_tasks import cleanup_run

    return json.dumps(cleanup_run(run_id, launcher, namespace))
