"""Cluster objects as data, and a small client for them.

- :mod:`r1ov.k8s.trainjobs`: ``build_pytorchjob`` / ``build_trainjob`` (multi-node training).
- :mod:`r1ov.k8s.rollout`: ``build_rollout_server`` / ``rollout_base_url`` (GRPO vLLM servers).
- :mod:`r1ov.k8s.client`: ``run_to_completion``, ``apply``, ``delete``, ``wait_ready``.
- :mod:`r1ov.k8s.names`, :mod:`r1ov.k8s.podspec`: names, labels and pod pieces they share.
- :mod:`r1ov.k8s.kinds`: REST coordinates and terminal conditions per kind.
- :mod:`r1ov.k8s.bundle`: the one home of image names, the tag and the GPU pool vocabulary.
- :mod:`r1ov.k8s.shutdown`: SIGTERM as an exception, so a stopped pod cleans up.
- :mod:`r1ov.k8s.doctor`: ``r1ov doctor``, the checks of a namespace before the first submit.

Builders are pure functions (no cluster needed, tested against the upstream CRD schemas);
only :mod:`r1ov.k8s.client` talks to an API server. May import ``r1ov.config`` and
``r1ov.errors``; never a stage, the registry or the pipeline.
"""

from r1ov.k8s.rollout import build_rollout_server, rollout_base_url
from r1ov.k8s.trainjobs import build_pytorchjob, build_trainjob

__all__ = ["build_pytorchjob", "build_rollout_server", "build_trainjob", "rollout_base_url"]
