"""The admission webhook's plumbing: its configuration object, its TLS, and the server kopf runs.

What it decides lives in controller/admission.py; controller/handlers.py registers the handler when SHADOW_WEBHOOK is
set. The ValidatingWebhookConfiguration is installed by an administrator (manifests/webhook/, or
the tests), never created by the operator: creating one would let the operator read every object
of any kind sent to it. The operator may only fill in the CA of the certificate it serves with.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api.v1alpha1 import GROUP, PLURAL, VERSION
from ..kube.permissions import WEBHOOK_CONFIGURATION

log = logging.getLogger(__name__)

HANDLER_ID = "validate-shadowdeployment"
# kopf serves each handler at /<handler id>.
PATH = f"/{HANDLER_ID}"
SERVICE_NAME = "shadow-operator-webhook"
SERVICE_PORT = 443
MODES = ("", "url", "service")


def configuration(client_config: dict[str, Any], namespace_selector: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration: creates and spec changes of ShadowDeployments, fail closed.

    failurePolicy Fail: while the operator is down nobody can create or change a ShadowDeployment,
    which is the point (failing open would let anyone bypass the check by waiting for a restart).
    Deletes are not judged, so cleaning up never waits for the operator.
    """
    webhook: dict[str, Any] = {
        "name": f"{PLURAL}.{GROUP}",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
        "rules": [
            {
                "apiGroups": [GROUP],
                "apiVersions": [VERSION],
                "operations": ["CREATE", "UPDATE"],
                "resources": [PLURAL],
                "scope": "Namespaced",
            }
        ],
        "clientConfig": client_config,
    }
    if namespace_selector is not None:
        webhook["namespaceSelector"] = namespace_selector
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION, "labels": {"app.kubernetes.io/name": "shadow-operator"}},
        "webhooks": [webhook],
    }


def service_client_config(namespace: str) -> dict[str, Any]:
    """How the API server reaches an in-cluster operator: its webhook Service (manifests/webhook/)."""
    return {"service": {"namespace": namespace, "name": SERVICE_NAME, "port": SERVICE_PORT, "path": PATH}}


def url_client_config(host: str, port: int, ca_bundle: str | None = None) -> dict[str, Any]:
    """How the API server reaches an operator outside the cluster (the tests: on loopback)."""
    config: dict[str, Any] = {"url": f"https://{host}:{port}{PATH}"}
    if ca_bundle:
        config["caBundle"] = ca_bundle
    return config


@dataclass(frozen=True)
class ServingCertificate:
    certfile: Path
    keyfile: Path
    ca_pem: bytes
    self_signed: bool

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_pem).decode("ascii")


def hostnames(mode: str, host: str, service: str) -> list[str]:
    """The names the API server may use for us: the URL's host, or every form of the Service's DNS name."""
    if mode == "url":
        return [host]
    namespace, _, name = service.partition("/")
    if not namespace or not name:
        raise ValueError(f"SHADOW_WEBHOOK_SERVICE must be <namespace>/<service>, got {service!r}")
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


def serving_certificate(cert_dir: str, names: list[str]) -> ServingCertificate:
    """The mounted certificate (tls.crt, tls.key, ca.crt) when there is one, else a fresh self-signed one."""
    if cert_dir:
        directory = Path(cert_dir)
        certfile, keyfile, cafile = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
        if certfile.exists() and keyfile.exists():
            ca_pem = cafile.read_bytes() if cafile.exists() else certfile.read_bytes()
            return ServingCertificate(certfile, keyfile, ca_pem, self_signed=False)
        log.warning("%s holds no tls.crt and tls.key: serving with a self-signed certificate", cert_dir)
    return _self_signed(names)


def _self_signed(names: list[str]) -> ServingCertificate:
    """A CA made for this process and a serving certificate it signs; the CA's key is never written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=365))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shadow-operator webhook CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp(prefix="shadow-webhook-"))  # 0700: the key is ours alone
    certfile, keyfile = directory / "tls.crt", directory / "tls.key"
    certfile.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return ServingCertificate(certfile, keyfile, ca.public_bytes(serialization.Encoding.PEM), self_signed=True)


def server(mode: str, host: str, port: int, certificate: ServingCertificate):
    """kopf's HTTPS server for admission reviews, listening where the API server will call."""
    import kopf

    addr = host if mode == "url" else "0.0.0.0"  # in a Pod the Service reaches any interface
    return kopf.WebhookServer(
        addr=addr,
        port=port,
        host=host,
        certfile=certificate.certfile,
        pkeyfile=certificate.keyfile,
        cadata=certificate.ca_pem,
    )
