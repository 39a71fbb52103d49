"""The ShadowDeployment field reference in Markdown, generated from the CRD schema."""

from __future__ import annotations

from typing import Any

from .crd import crd_manifest


def _type_of(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    if node.get("type") == "array":
        return f"[]{_type_of(node.get('items', {}))}"
    if "enum" in node:
        return " \\| ".join(str(v) for v in node["enum"])
    return node.get("type", "object")


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    if "minimum" in node or "maximum" in node:
        parts.append(f"{node.get('minimum', '')}..{node.get('maximum', '')}")
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    return ", ".join(parts)


def _rows(node: dict[str, Any], path: str, required: bool) -> list[str]:
    default = node.get("default")
    cells = [
        f"`{path}`",
        _type_of(node),
        "yes" if required else "",
        "" if default is None else f"`{default}`",
        _constraints(node),
        " ".join(str(node.get("description", "")).split()).replace("|", "\\|"),
    ]
    rows = ["| " + " | ".join(cells) + " |"]
    children = node.get("properties") or (node.get("items") or {}).get("properties") or {}
    child_required = set(node.get("required") or (node.get("items") or {}).get("required") or [])
    suffix = "[]" if node.get("type") == "array" else ""
    for name, child in children.items():
        rows += _rows(child, f"{path}{suffix}.{name}", name in child_required)
    return rows


def api_reference() -> str:
    schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    lines = [
        "# ShadowDeployment reference (shadow.mlops.dev/v1alpha1)",
        "",
        "Generated from the API types by `make manifests`; `kubectl explain shadowdeployment.spec` shows the same.",
        "",
    ]
    for section in ("spec", "status"):
        node = schema["properties"][section]
        lines += [
            f"## {section}",
            "",
            "| field | type | required | default | limits | description |",
            "|---|---|---|---|---|---|",
            *_rows(node, section, section in schema.get("required", [])),
            "",
        ]
    return "\n".join(lines)
