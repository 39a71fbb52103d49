"""Operator settings, read once from the environment (the Deployment sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import __version__


@dataclass(frozen=True)
class Settings:
    # The image the router and the comparison job run from: the operator's own.
    image: str
    # How often every ShadowDeployment is reconciled even when nothing changed.
    resync_seconds: float
    max_workers: int

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            image=os.environ.get("SHADOW_OPERATOR_IMAGE", f"shadow-operator:{__version__}"),
            resync_seconds=float(os.environ.get("SHADOW_RESYNC_SECONDS", "60")),
            max_workers=int(os.environ.get("SHADOW_MAX_WORKERS", "8")),
        )
