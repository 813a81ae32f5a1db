"""MLflow: runs, model versions, aliases, the promotion gate and the serving endpoint's roll.

- :mod:`tracking`: the client for a configured store, experiments, stage and pipeline runs.
- :mod:`models`: registering a checkpoint with its lineage, look-ups, ``models:/`` downloads.
- :mod:`promotion`: the evidence gate that moves ``champion`` (and rolls the endpoint).
- :mod:`serving`: the inference endpoint's view of a registered model.
- :mod:`users`: the pipeline's and the endpoint's MLflow users (the platform chart's Job).

May import: ``r1ov.k8s`` (to roll the endpoint), ``r1ov.scoring`` (verdicts, paired
statistics), ``r1ov.data``, ``r1ov.config``, ``r1ov.errors``. Never a stage: eval and
training call the registry, not the other way round.
"""
