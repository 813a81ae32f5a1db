"""The KFP pipeline's side of the library: task bodies, compiling, submitting, the local demo.

- :mod:`tasks`: what each KFP component runs (a stage from :mod:`r1ov.stages`, tracking, clean-up).
- :mod:`compile`: ``pipelines/r1ov.py`` and every component to YAML.
- :mod:`submit`: a compiled pipeline to a KFP API server.
- :mod:`demo`: the same pipeline end to end on one CPU machine with kfp.local.

May import every library package; only :mod:`demo` may import ``r1ov.synthetic`` and
``r1ov.testing`` (its offline data and tiny model). Nothing in the library imports this package.
"""
