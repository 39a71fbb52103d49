"""Generate the CustomResourceDefinition from the pydantic models (the only source of truth).

Pydantic emits JSON Schema 2020-12; the API server wants a structural OpenAPI v3 schema.
The translation inlines `$ref`s, turns `Optional[X]` into plain `X` (optional = not
required), `const` into a one-value enum, and drops what OpenAPI v3 lacks.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from . import v1alpha1

_DROPPED_KEYS = {"title", "$defs", "discriminator"}
_PRINTER_COLUMNS = [
    {"name": "Primary", "type": "string", "jsonPath": ".status.primary", "description": "Primary image or Deployment."},
    {"name": "Candidate", "type": "string", "jsonPath": ".spec.candidate.image", "description": "Candidate image."},
    {
        "name": "Mirror%",
        "type": "number",
        "jsonPath": ".spec.traffic.mirrorPercent",
        "description": "Mirrored percent.",
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Rollout phase."},
    {"name": "Verdict", "type": "string", "jsonPath": ".status.verdict.reason", "description": "Verdict reason."},
    {"name": "Coverage", "type": "string", "jsonPath": ".status.coverage.summary", "description": "Cycle coverage."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model, as the API server validates it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.get("$defs", {})
    return _translate(raw, definitions)


def _translate(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_translate(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        # The field's own description wins over the referenced model's docstring.
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _translate(merged, definitions)
    if node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string"):
        return _open_ended(node, definitions)
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) == 1:
            rest = {
                k: v for k, v in node.items() if k not in ("anyOf", "default") or (k == "default" and v is not None)
            }
            return _translate({**options[0], **rest}, definitions)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: _translate(prop, definitions) for name, prop in value.items()}
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "additionalProperties" and value is False:
            continue  # pruning already drops unknown fields; `false` is not structural
        elif key == "example":
            continue
        else:
            out[key] = _translate(value, definitions)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _open_ended(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Fields passed through to Kubernetes (pod template, env source, quantities)."""
    keep = {"description", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "type"}
    out = {k: v for k, v in node.items() if k in keep}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "type" not in out or out["type"] != "object":
        out["type"] = "object"
    return out


def _without_defaults(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_defaults(item) for item in node]
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    return node


def _schema_root() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A shadow rollout: a candidate model sees a copy of the primary's live traffic and is "
        "judged against it; only the primary's answers reach users.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "shadow.mlops.dev/v1alpha1."},
            "kind": {"type": "string", "description": "ShadowDeployment."},
            "metadata": {"type": "object"},
            "spec": openapi_schema(v1alpha1.ShadowDeploymentSpec),
            # Only the operator writes status, so defaults there would only hide its bugs.
            "status": _without_defaults(openapi_schema(v1alpha1.ShadowDeploymentStatus)),
        },
    }


def crd_manifest() -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{v1alpha1.PLURAL}.{v1alpha1.GROUP}"},
        "spec": {
            "group": v1alpha1.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": v1alpha1.KIND,
                "listKind": f"{v1alpha1.KIND}List",
                "plural": v1alpha1.PLURAL,
                "singular": v1alpha1.SINGULAR,
                "shortNames": list(v1alpha1.SHORT_NAMES),
                "categories": ["all", "mlops"],
            },
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": _schema_root()},
                }
            ],
        },
    }
