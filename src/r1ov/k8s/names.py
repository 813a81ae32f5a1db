"""Object names and the standard labels every r1ov object carries.

Names follow RFC 1035 labels (lowercase letters, digits and ``-``, starting with a letter, at
most 63 characters): stricter than DNS-1123, and what the PyTorchJob webhook and the TrainJob
CRD demand. Controllers derive child names (pods, services, jobs) by appending suffixes, so
each builder passes the budget left after its longest suffix. A name cut to fit keeps a short
hash of the full text, so two long names that share a prefix stay distinct.
"""

from __future__ import annotations

import hashlib
import re

from r1ov.k8s import bundle

MAX_NAME = 63
_HASH_CHARS = 6
_INVALID = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")
_SELECTOR_KEYS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")


def dns_label(text: str, max_len: int = MAX_NAME) -> str:
    """``text`` as an RFC 1035 label of at most ``max_len`` characters (``"SFT_Run 1"`` -> ``"sft-run-1"``)."""
    if max_len < _HASH_CHARS + 2:
        raise ValueError(f"max_len must be at least {_HASH_CHARS + 2}, got {max_len}")
    label = _DASHES.sub("-", _INVALID.sub("-", text.lower())).strip("-")
    if not label:
        raise ValueError(f"cannot make a Kubernetes name from {text!r}: it has no letters or digits")
    if not label[0].isalpha():
        label = f"r{label}" if label[0].isdigit() else f"r-{label}"
    if len(label) > max_len:
        digest = hashlib.sha1(text.encode()).hexdigest()[:_HASH_CHARS]
        label = f"{label[: max_len - _HASH_CHARS - 1].rstrip('-')}-{digest}"
    return label


def standard_labels(name: str, component: str) -> dict[str, str]:
    """The ``app.kubernetes.io/*`` labels; ``name`` must already be a valid label value."""
    return {
        "app.kubernetes.io/name": "r1ov",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "r1ov",
        "app.kubernetes.io/managed-by": "r1ov",
        "app.kubernetes.io/version": bundle.TAG,
    }


def selector_labels(name: str, component: str) -> dict[str, str]:
    """The subset of :func:`standard_labels` that never changes across releases (selectors are immutable)."""
    labels = standard_labels(name, component)
    return {key: labels[key] for key in _SELECTOR_KEYS}
