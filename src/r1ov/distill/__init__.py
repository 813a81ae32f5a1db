"""The distill stage: role-played ``<think>`` chains from a reasoning LLM over the formal text.

:mod:`r1ov.distill.stage` holds ``run``. May import: ``r1ov.teachers`` (the client),
``r1ov.data``, ``r1ov.scoring``, ``r1ov.config``, ``r1ov.errors``.
"""
