"""Operator settings, read once from the environment (the Deployment sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import __version__


@dataclass(frozen=True)
class Settings:
    # The image the router and the comparison job run from: the operator's own.
    image: str
    # How often every ShadowDeployment is reconciled even when nothing changed.
    resync_seconds: float
    max_workers: int
    # The admission webhook (controller/webhook.py): "" serves none; "url" registers https://<host>:<port>
    # (an operator outside the cluster, as in the tests); "service" is reached through
    # <namespace>/<service> (the manifests). Either way the configuration object itself is
    # installed by an administrator; the operator only fills in its caBundle.
    webhook: str = ""
    webhook_port: int = 9443
    webhook_host: str = "127.0.0.1"
    webhook_service: str = ""
    # tls.crt, tls.key and ca.crt of a serving certificate (e.g. cert-manager's Secret); when
    # absent the operator makes a self-signed one at each start and patches its CA in.
    webhook_cert_dir: str = ""

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            image=os.environ.get("SHADOW_OPERATOR_IMAGE", f"shadow-operator:{__version__}"),
            resync_seconds=float(os.environ.get("SHADOW_RESYNC_SECONDS", "60")),
            max_workers=int(os.environ.get("SHADOW_MAX_WORKERS", "8")),
            webhook=os.environ.get("SHADOW_WEBHOOK", ""),
            webhook_port=int(os.environ.get("SHADOW_WEBHOOK_PORT", "9443")),
            webhook_host=os.environ.get("SHADOW_WEBHOOK_HOST", "127.0.0.1"),
            webhook_service=os.environ.get("SHADOW_WEBHOOK_SERVICE", ""),
            webhook_cert_dir=os.environ.get("SHADOW_WEBHOOK_CERT_DIR", ""),
        )
