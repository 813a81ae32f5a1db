"""The filter stage: rules (format, answer agreement, length, repetition) plus an LLM judge.

:mod:`r1ov.filtering.stage` holds ``run``; rejected rows keep their reason. May import:
``r1ov.teachers`` (the judge's client), ``r1ov.data``, ``r1ov.scoring``, ``r1ov.config``,
``r1ov.errors``.
"""
