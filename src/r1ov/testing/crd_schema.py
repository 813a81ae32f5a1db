"""Custom resources as kube-apiserver decodes and validates them: structural pruning, then the schema.

What the API server does with a custom resource it is sent (k8s.io/apiextensions-apiserver v0.36.3,
the staging copy of Kubernetes 1.36), and what :class:`r1ov.testing.kube_api.StandInAPI` does with it:

1. **Pruning** (``pkg/apiserver/schema/pruning/algorithm.go``, ``prune``): every field the CRD's
   structural schema does not declare is dropped, below ``x-kubernetes-preserve-unknown-fields``
   only the declared fields are descended into, and ``apiVersion``/``kind``/``metadata`` are kept at
   the root and in every ``x-kubernetes-embedded-resource`` (:func:`prune`). The decoder
   (``pkg/apiserver/customresource_handler.go``, ``schemaCoercingDecoder.Decode``) turns the pruned
   paths into ``unknown field "<path>"`` strict-decoding errors; what the request's
   ``fieldValidation`` makes of them is the handler's business (see ``kube_api``).
   Null values of fields that are neither nullable nor defaulted go too
   (``pkg/apiserver/schema/defaulting/prunenulls.go``, ``PruneNonNullableNullsWithoutDefaults``).
2. **Validation** (``pkg/registry/customresource/validator.go``, ``Validate`` ->
   ``pkg/apiserver/validation/validation.go``, ``ValidateCustomResource``): the OpenAPI v3 schema,
   each failure a ``field.Error`` whose kind follows ``kubeOpenAPIResultToFieldErrors`` (required ->
   ``Required value``, enum -> ``Unsupported value``, type -> ``Invalid value``, ...) and whose text
   follows kube-openapi's messages (``pkg/validation/errors/schema.go``), at a path written
   ``spec.list[0].field`` (``pkg/validation/validate/slice_validator.go``). The request fails with
   422 ``Invalid`` (k8s.io/apimachinery ``pkg/api/errors/errors.go``, ``NewInvalid``).

The schema checks themselves are jsonschema's (Draft 4, whose boolean ``exclusiveMinimum`` is the one
OpenAPI v3.0 uses), with ``nullable`` turned into a JSON type.

Not modelled: CEL rules (``x-kubernetes-validations``), ``format`` checks, defaulting, list-type and
map-type uniqueness (``x-kubernetes-list-type``), ObjectMeta coercion and validation of
``metadata`` (name syntax, unknown metadata fields), conversion between versions, and status
subresource rules. Go's RE2 patterns are read as Python regular expressions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# Fields the pruning algorithm keeps at an object's root (pruning/algorithm.go, metaFields).
META_FIELDS = ("apiVersion", "kind", "metadata")


# --------------------------------------------------------------------------- the CRD


@dataclass(frozen=True)
class CRD:
    """A CustomResourceDefinition as the server reads it: names, scope and each served version's schema."""

    group: str
    kind: str
    plural: str
    namespaced: bool
    schemas: dict[str, dict[str, Any]]  # served version -> openAPIV3Schema

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> CRD:
        spec = doc["spec"]
        return cls(
            group=spec["group"],
            kind=spec["names"]["kind"],
            plural=spec["names"]["plural"],
            namespaced=spec["scope"] == "Namespaced",
            schemas={v["name"]: v["schema"]["openAPIV3Schema"] for v in spec["versions"] if v.get("served", True)},
        )

    @classmethod
    def load(cls, path: str | Path) -> CRD:
        # libyaml's loader when present: the training CRDs embed whole pod templates (0.5-1 MB each).
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return cls.from_document(yaml.load(Path(path).read_text(), Loader=loader))

    def validator(self, version: str) -> SchemaValidator:
        return SchemaValidator(self.schemas[version])


# --------------------------------------------------------------------------- pruning


def _path(parts: Iterable[str | int]) -> str:
    """``spec.list[0].field``, the way UnknownFieldPathOptions (pkg/apiserver/schema/options.go) and
    kube-openapi's validators write a path."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_NO_ADDITIONAL = (False, None)


def _additional(schema: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    """(whether ``additionalProperties`` declares every other key, the schema of their values). A boolean
    declares the keys with no schema (structuralschema.StructuralOrBool with a nil Structural), so the
    pruning algorithm empties any object below them."""
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        return True, extra
    return (True, None) if isinstance(extra, bool) else _NO_ADDITIONAL


def prune(obj: Any, schema: dict[str, Any] | None, *, root: bool = True) -> list[str]:
    """Drop from ``obj`` (in place) every field ``schema`` does not declare; returns their paths, sorted.

    pruning/algorithm.go, ``PruneWithOptions`` with ``isResourceRoot``: the root is treated as an
    embedded resource, so ``apiVersion``, ``kind`` and ``metadata`` stay (``metadata`` is never pruned
    here: the server coerces ObjectMeta separately).
    """
    if root:
        schema = {**(schema or {}), "x-kubernetes-embedded-resource": True}
    unknown: list[str] = []
    _prune(obj, schema, [], unknown)
    _prune_nulls(obj, schema)
    return sorted(unknown)


def _prune(x: Any, s: dict[str, Any] | None, path: list[str | int], unknown: list[str]) -> None:
    # algorithm.go, prune: preserve-unknown-fields keeps undeclared keys but still prunes below declared ones.
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields"):
        _skip_prune(x, s, path, unknown)
        return
    if isinstance(x, dict):
        if s is None:
            for key in list(x):
                unknown.append(_path([*path, key]))
                del x[key]
            return
        embedded = bool(s.get("x-kubernetes-embedded-resource"))
        properties = s.get("properties") or {}
        declared, extra = _additional(s)
        for key in list(x):
            if embedded and key in META_FIELDS:
                continue
            if key in properties:
                _prune(x[key], properties[key], [*path, key], unknown)
            elif declared:
                _prune(x[key], extra, [*path, key], unknown)
            else:
                # A stray apiVersion/kind/metadata at the root is dropped without being reported.
                if key not in META_FIELDS or path:
                    unknown.append(_path([*path, key]))
                del x[key]
    elif isinstance(x, list):
        for i, item in enumerate(x):
            _prune(item, None if s is None else s.get("items"), [*path, i], unknown)


def _skip_prune(x: Any, s: dict[str, Any], path: list[str | int], unknown: list[str]) -> None:
    # algorithm.go, skipPrune.
    if isinstance(x, dict):
        embedded = bool(s.get("x-kubernetes-embedded-resource"))
        properties = s.get("properties") or {}
        declared, extra = _additional(s)
        for key, value in x.items():
            if embedded and key in META_FIELDS:
                continue
            if key in properties:
                _prune(value, properties[key], [*path, key], unknown)
            elif declared:
                _prune(value, extra, [*path, key], unknown)
    elif isinstance(x, list):
        for i, item in enumerate(x):
            items = s.get("items")
            if items is not None:
                _skip_prune(item, items, [*path, i], unknown)


def _prune_nulls(x: Any, s: dict[str, Any] | None) -> None:
    """defaulting/prunenulls.go, PruneNonNullableNullsWithoutDefaults: a null map value whose schema is
    neither nullable nor defaulted is removed (native types' json.Unmarshal would drop it too)."""
    if s is None:
        return
    if isinstance(x, dict):
        properties = s.get("properties") or {}
        extra = _additional(s)[1]
        for key in list(x):
            sub = properties.get(key, extra)
            if sub is None:
                continue
            if x[key] is None and not sub.get("nullable") and "default" not in sub:
                del x[key]
            else:
                _prune_nulls(x[key], sub)
    elif isinstance(x, list):
        for item in x:
            _prune_nulls(item, s.get("items"))


# --------------------------------------------------------------------------- validation


# field.ErrorType.String() of the types the schema validation produces.
_ERROR_TEXT = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
}


@dataclass(frozen=True)
class FieldError:
    """One ``field.Error`` (k8s.io/apimachinery pkg/util/validation/field/errors.go)."""

    type: str  # the StatusCause reason: FieldValueRequired, FieldValueInvalid, ...
    field: str
    bad_value: Any = None
    detail: str = ""

    def body(self) -> str:
        """errors.go, ``Error.ErrorBody``: the type, the bad value where it is shown, the detail."""
        text = _ERROR_TEXT.get(self.type, self.type)
        if self.type not in ("FieldValueRequired", "FieldValueTooLong"):
            value = self.bad_value
            if isinstance(value, str):
                text += f": {json.dumps(value)}"
            elif isinstance(value, bool):
                text += f": {str(value).lower()}"
            elif isinstance(value, int | float):
                text += f": {value}"
            else:
                text += f": {json.dumps(value, separators=(',', ':'))}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def _json_type(value: Any) -> str:
    """kube-openapi's name for a value's type (pkg/validation/validate/type.go, schemaInfoForType)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _openapi_to_jsonschema(schema: Any) -> Any:
    """OpenAPI v3.0 ``nullable`` as a JSON type (jsonschema knows no ``nullable``)."""
    if isinstance(schema, list):
        return [_openapi_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _openapi_to_jsonschema(v) for k, v in schema.items()}
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        out["type"] = [schema["type"], "null"]
    return out


class SchemaValidator:
    """The OpenAPI validation of one CRD version's schema; :meth:`errors` lists its field errors."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._validator = jsonschema.Draft4Validator(_openapi_to_jsonschema(copy.deepcopy(schema)))

    def errors(self, obj: dict[str, Any]) -> list[FieldError]:
        found: list[FieldError] = []
        for error in self._validator.iter_errors(obj):
            found.extend(_field_errors(error))
        # Sorted by path, duplicates dropped (utilerrors.NewAggregate prints each distinct message once).
        unique = {(e.field, e.type, str(e)): e for e in found}
        return [unique[key] for key in sorted(unique)]


def _field_errors(error: jsonschema.ValidationError) -> list[FieldError]:
    """pkg/apiserver/validation/validation.go, kubeOpenAPIResultToFieldErrors, over kube-openapi's messages."""
    where = _path(error.absolute_path)
    keyword, expected, value = error.validator, error.validator_value, error.instance
    if keyword == "required":
        missing = [name for name in expected if isinstance(value, dict) and name not in value]
        return [FieldError("FieldValueRequired", _path([*error.absolute_path, name])) for name in missing]
    if keyword == "type":
        wanted = ",".join(expected) if isinstance(expected, list) else expected
        actual = _json_type(value)
        detail = f'{where} in body must be of type {wanted}: "{actual}"'
        return [FieldError("FieldValueTypeInvalid", where, actual, detail)]
    if keyword == "enum":
        values = ", ".join(json.dumps(v if isinstance(v, str) else json.dumps(v)) for v in expected)
        return [FieldError("FieldValueNotSupported", where, value, f"supported values: {values}")]
    if keyword == "maxLength":
        return [FieldError("FieldValueTooLong", where, None, f"may not be more than {expected} bytes")]
    if keyword in ("maxItems", "maxProperties"):
        noun = "item" if expected == 1 else "items"
        return [FieldError("FieldValueTooMany", where, len(value), f"must have at most {expected} {noun}")]
    messages = {
        "pattern": f"{where} in body should match '{expected}'",
        "minimum": f"{where} in body should be greater than or equal to {expected}",
        "maximum": f"{where} in body should be less than or equal to {expected}",
        "minLength": f"{where} in body should be at least {expected} chars long",
        "minItems": f"{where} in body should have at least {expected} items",
    }
    shown = value if isinstance(value, str | int | float | bool) else ""
    return [FieldError("FieldValueInvalid", where, shown, messages.get(keyword, error.message))]


def aggregate(errors: list[FieldError]) -> str:
    """k8s.io/apimachinery pkg/util/errors ``aggregate.Error``: one message, or ``[a, b]``."""
    texts = list(dict.fromkeys(str(e) for e in errors))
    return texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"
