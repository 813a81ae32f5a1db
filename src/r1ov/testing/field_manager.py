"""Server-side apply as kube-apiserver does it: field ownership per manager, a structured merge, conflicts.

Follows sigs.k8s.io/structured-merge-diff/v4 at the level the stand-in needs:

- ``merge/update.go`` (``Updater.Apply``): the applied configuration's fields are compared with the
  fields other managers own; a field another manager owns whose value the apply would change is a
  conflict (409) unless ``force`` is set, which moves ownership to the applier. Fields the applier
  owned before and no longer sends are removed, unless another manager still owns them
  (``Updater.prune`` / ``removeNoLongerOwned``).
- ``typed/merge.go``: maps merge member by member; lists marked
  ``x-kubernetes-list-type: map`` (containers, env, ports, volumes... keyed by their
  ``x-kubernetes-list-map-keys`` in k8s.io/api's OpenAPI) merge item by item on their keys; every
  other list is atomic and replaced whole.
- a create (POST) records the whole object under the creating manager (operation Update), so a later
  apply by another manager conflicts with it (``fieldmanager.FieldManager.Update``).

Not modelled: sets (``x-kubernetes-list-type: set``), granular maps vs atomic structs declared by a
schema (every map here merges), versioned managed fields, ``managedFields`` on the object.
"""

from __future__ import annotations

import copy
from typing import Any

# (list field name) -> the keys of its items, from k8s.io/api's OpenAPI (`x-kubernetes-list-map-keys`).
# Container ports are keyed by (containerPort, protocol), Service ports by (port, protocol); protocol
# defaults to TCP before the merge (the API server's defaulting runs first).
_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
}
_DEFAULTS = {"protocol": "TCP"}

Path = tuple[Any, ...]


class ApplyConflict(Exception):
    """Fields another manager owns that this apply would change; ``conflicts`` maps manager -> paths."""

    def __init__(self, conflicts: dict[str, list[str]]) -> None:
        count = sum(len(paths) for paths in conflicts.values())
        parts = [f'conflict with "{manager}": {", ".join(paths)}' for manager, paths in sorted(conflicts.items())]
        word = "conflict" if count == 1 else "conflicts"
        super().__init__(f"Apply failed with {count} {word}: {'; '.join(parts)}")
        self.conflicts = conflicts


def _list_keys(name: Any, items: list[Any]) -> tuple[str, ...] | None:
    if not items or not all(isinstance(item, dict) for item in items):
        return _KEYS.get(name)
    if name == "ports":
        return ("containerPort", "protocol") if "containerPort" in items[0] else ("port", "protocol")
    return _KEYS.get(name)


def _item_key(item: dict[str, Any], keys: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    return tuple((k, item.get(k, _DEFAULTS.get(k))) for k in keys)


def leaves(obj: Any, path: Path = (), name: Any = None) -> dict[Path, Any]:
    """Every owned field of ``obj`` with its value: scalars, atomic lists and empty maps are leaves;
    a keyed list's items are addressed by their key (``("key", (("name", "vllm"),))``)."""
    out: dict[Path, Any] = {}
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            out.update(leaves(value, (*path, key), key))
    elif isinstance(obj, list) and (keys := _list_keys(name, obj)) and all(isinstance(i, dict) for i in obj):
        for item in obj:
            item_path = (*path, ("key", _item_key(item, keys)))
            out.update(leaves({**{k: v for k, v in _item_key(item, keys)}, **item}, item_path, None))
    else:
        out[path] = obj
    return out


def render(path: Path) -> str:
    """``.spec.template.spec.containers[name="vllm"].image``, as the API server words field paths."""
    text = ""
    for part in path:
        if isinstance(part, tuple):
            text += "[" + ",".join(f"{k}={v!r}".replace("'", '"') for k, v in part[1]) + "]"
        else:
            text += f".{part}"
    return text


def _merge(live: Any, config: Any, name: Any = None) -> Any:
    if isinstance(live, dict) and isinstance(config, dict):
        out = copy.deepcopy(live)
        for key, value in config.items():
            out[key] = _merge(live.get(key), value, key) if key in live else copy.deepcopy(value)
        return out
    if isinstance(live, list) and isinstance(config, list) and (keys := _list_keys(name, config or live)):
        out = [copy.deepcopy(item) for item in live]
        index = {_item_key(item, keys): i for i, item in enumerate(out) if isinstance(item, dict)}
        for item in config:
            key = _item_key(item, keys)
            if key in index:
                out[index[key]] = _merge(out[index[key]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(config)


def _get(obj: Any, path: Path) -> Any:
    for part in path:
        if isinstance(part, tuple):
            match = [i for i in obj or [] if isinstance(i, dict) and all(i.get(k, _DEFAULTS.get(k)) == v
                                                                            for k, v in part[1])]  # fmt: skip
            obj = match[0] if match else None
        else:
            obj = (obj or {}).get(part) if isinstance(obj, dict) or obj is None else None
    return obj


def _remove(obj: Any, path: Path) -> None:
    """Delete the field at ``path``; a keyed item losing a key field goes whole; maps left empty go too."""
    *parents, last = path
    container = _get(obj, tuple(parents))
    if parents and isinstance(parents[-1], tuple) and last in dict(parents[-1][1]):
        items = _get(obj, tuple(parents[:-1]))
        if isinstance(items, list):
            items[:] = [i for i in items if _get([i], (parents[-1],)) is None]
        return
    if isinstance(container, dict):
        container.pop(last, None)
        if not container and parents and not isinstance(parents[-1], tuple):
            _remove(obj, tuple(parents))


def apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    owners: dict[str, set[Path]],
    manager: str,
    *,
    force: bool,
) -> dict[str, Any]:
    """The object after ``manager`` applies ``config`` onto ``live``; updates ``owners`` in place.

    Raises :class:`ApplyConflict` when another manager owns a field whose value would change and
    ``force`` is false.
    """
    applied = leaves({k: v for k, v in config.items() if k not in ("apiVersion", "kind", "status")})
    applied = {p: v for p, v in applied.items() if p[:2] != ("metadata", "name") and p[:2] != ("metadata", "namespace")}
    conflicts: dict[str, list[str]] = {}
    for other, fields in owners.items():
        if other == manager:
            continue
        for path in sorted(fields & applied.keys(), key=render):
            if live is not None and _get(live, path) != applied[path]:
                conflicts.setdefault(other, []).append(render(path))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for other, paths in conflicts.items():
        owners[other] -= {p for p in applied if render(p) in paths}
    merged = _merge(live or {}, config)
    previous = owners.get(manager, set())
    still_owned = set().union(*(f for m, f in owners.items() if m != manager)) if owners else set()
    for path in sorted(previous - applied.keys() - still_owned, key=len, reverse=True):
        _remove(merged, path)
    owners[manager] = set(applied)
    return merged


def record_update(obj: dict[str, Any], owners: dict[str, set[Path]], manager: str) -> None:
    """A create or update by ``manager``: it owns every field it wrote (operation Update)."""
    fields = leaves({k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")})
    fields = {p for p in fields if p[:2] not in (("metadata", "name"), ("metadata", "namespace"))}
    for other in owners:
        owners[other] -= fields
    owners[manager] = owners.get(manager, set()) | fields
