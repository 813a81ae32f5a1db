"""The data path's ground floor: records, where they live, and how they enter and leave.

- :mod:`records`: the record schema (pyarrow) and shard read/write.
- :mod:`storage`: URIs, local or ``s3://``; atomic, idempotent writes.
- :mod:`imaging`: image bytes in, checked PIL images out.
- :mod:`inputs`: a stage's inputs and outputs checked before and after it runs.
- :mod:`outcome`: accepted/rejected counts, reasons, acceptance floors, the stage summary.
- :mod:`importers` / :mod:`exporters`: published layouts in, TRL/ShareGPT datasets out.
- :mod:`fanout`: splitting a dataset into shards and merging them back.

May import: ``r1ov.config``, ``r1ov.errors``, ``r1ov.scoring``. Never a stage, training,
the registry, the cluster or the pipeline: those build on this package.
"""
