"""Kubernetes' own field types as the podTemplate's fields use them: names, label values, paths, modes, quantities."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

INT_OR_STRING = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
# A Kubernetes object name (DNS-1123 subdomain) and a DNS-1123 label (volume, container names).
OBJECT_NAME = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
LABEL_NAME = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
# A label value: empty, or alphanumerics with -_. inside.
LABEL_VALUE = Annotated[str, Field(pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", max_length=63)]
FILE_MODE = Annotated[int, Field(ge=0, le=0o777)]
Quantity = Annotated[int | str, Field(json_schema_extra=INT_OR_STRING)]
ABSOLUTE_PATH = Annotated[str, Field(pattern=r"^/", max_length=4096)]
RELATIVE_PATH = Annotated[str, Field(pattern=r"^[^/]", max_length=4096)]
