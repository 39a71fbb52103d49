"""The base every API model derives from: camelCase on the wire, unknown fields refused."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from .durations import DURATION_PATTERN


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def one_of(*fields: str) -> dict[str, Any]:
    """A model_config saying "exactly one of these fields" (as written on the wire) in the CRD schema."""
    return {"json_schema_extra": {"oneOf": [{"required": [field]} for field in fields]}}


def require_exactly_one(model: ApiModel, fields: Iterable[str], message: str) -> None:
    """pydantic's side of `one_of`: exactly one of the attributes `fields` is set, or `message` names the choice."""
    if sum(getattr(model, name) is not None for name in fields) != 1:
        raise ValueError(message)


Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, json_schema_extra={"example": "10m"}),
]

# The schema only checks the leading `$`; the full grammar is checked by the operator
# (jsonpath.compile_path), whose message can say which character is wrong.
JsonPath = Annotated[str, Field(pattern=r"^\$", min_length=1, max_length=512)]

DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
Port = Annotated[int, Field(ge=1, le=65535)]
Fraction = Annotated[float, Field(ge=0, le=1)]

# Keys of open-ended objects, passed through to Kubernetes as they are.
PRESERVE_UNKNOWN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def describe_validation_error(error: ValidationError, prefix: str = "spec") -> list[str]:
    """One line per problem, naming the field as the user wrote it: `spec.traffic.mirrorPercent: ...`."""
    lines = []
    for item in error.errors():
        parts = [_loc(part) for part in item["loc"] if not _is_union_member(part)]
        location = ".".join([prefix, *parts]).replace(".[", "[")
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field: check the spelling against `kubectl explain shadowdeployment.spec`"
        lines.append(f"{location}: {message}")
    return lines


def _is_union_member(part: str | int) -> bool:
    """pydantic names the member of `int | str` it tried (`.int`); users never wrote that."""
    return isinstance(part, str) and (part in {"int", "str", "float", "bool"} or "[" in part)


def _loc(part: str | int) -> str:
    return f"[{part}]" if isinstance(part, int) else str(part)
