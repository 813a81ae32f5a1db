"""The answer core that rewards, the filter and eval share, so all three judge alike.

- :mod:`reasoning`: the ``<think>``/``<answer>`` format and question text.
- :mod:`answers`: extracting and comparing an answer with the ground truth.
- :mod:`numeric` / :mod:`symbolic`: number and LaTeX equivalence (math-verify behind a budget).
- :mod:`lengths`: token lengths of a dataset against a stage's limits (a preflight).
- :mod:`verdicts` / :mod:`paired`: per-item verdicts and the paired comparison of two models.

May import: ``r1ov.config``, ``r1ov.errors``, ``r1ov.data``. Never a stage, training, the
registry, the cluster or the pipeline.
"""
