"""What a ShadowDeployment's author must be allowed to do, and how the webhook says no (controller/admission.py, controller/webhook.py)."""

from __future__ import annotations

import socket
import ssl
import threading

from shadow_operator.controller.admission import Access, refusal, required_access, spec_changed
from shadow_operator.controller.webhook import configuration, hostnames, serving_certificate, url_client_config

from .factories import REFERENCED_PRIMARY, make_sd


def _asks(sd, service_exists: bool) -> set[tuple[str, str, str, str]]:
    return {(a.verb, a.group, a.resource, a.name) for a in required_access(sd, service_exists)}


def test_an_operator_run_primary_behind_an_existing_service_needs_deployments_and_that_service():
    sd = make_sd({"traffic": {"router": "builtin"}})
    assert _asks(sd, service_exists=True) == {
        ("create", "apps", "deployments", ""),
        ("patch", "", "services", sd.spec.service.name),
    }
    [deployments] = [a for a in required_access(sd, True) if a.resource == "deployments"]
    assert deployments.field == "spec.candidate.image and spec.primary.image"


def test_a_service_that_does_not_exist_needs_create_and_istio_needs_its_routes():
    sd = make_sd({"traffic": {"router": "istio"}})
    assert _asks(sd, service_exists=False) == {
        ("create", "apps", "deployments", ""),
        ("create", "", "services", ""),
        ("create", "networking.istio.io", "virtualservices", ""),
        ("create", "networking.istio.io", "destinationrules", ""),
    }


def test_a_referenced_primary_needs_read_access_to_that_deployment():
    sd = make_sd({**REFERENCED_PRIMARY, "traffic": {"router": "builtin"}})
    asks = _asks(sd, service_exists=True)
    assert ("get", "apps", "deployments", "recsys") in asks
    [deployments] = [a for a in required_access(sd, True) if a.verb == "create"]
    assert deployments.field == "spec.candidate.image"


def test_only_a_create_or_a_spec_change_is_judged():
    body = {"spec": {"a": 1}, "metadata": {"finalizers": []}}
    assert spec_changed("CREATE", body, None)
    assert not spec_changed("UPDATE", {**body, "metadata": {"finalizers": ["x"]}}, body)
    assert spec_changed("UPDATE", {"spec": {"a": 2}}, body)


def test_the_refusal_names_each_field_the_permission_and_how_to_check():
    denied = [Access("spec.service.name", "patch", "", "services", "payments", why="it captures its traffic")]
    message = refusal("alice", "team-a", denied)
    assert "spec.service.name: alice may not patch services/payments in namespace team-a" in message
    assert "kubectl auth can-i patch services/payments -n team-a --as alice" in message


def test_the_configuration_fails_closed_and_never_judges_deletes():
    [hook] = configuration(url_client_config("127.0.0.1", 9443))["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert hook["clientConfig"]["url"] == "https://127.0.0.1:9443/validate-shadowdeployment"


def test_the_self_signed_certificate_is_trusted_through_its_ca_for_the_service_names(tmp_path):
    names = hostnames("service", "", "shadow-system/shadow-operator-webhook")
    assert "shadow-operator-webhook.shadow-system.svc" in names
    certificate = serving_certificate("", names)
    assert certificate.self_signed and oct(certificate.keyfile.stat().st_mode & 0o777) == "0o600"
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate.certfile, certificate.keyfile)
    client_context = ssl.create_default_context(cadata=certificate.ca_pem.decode())
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        connection, _ = listener.accept()
        try:
            with server_context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    for name, trusted in (("shadow-operator-webhook.shadow-system.svc", True), ("elsewhere.example", False)):
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port)) as raw,
                client_context.wrap_socket(raw, server_hostname=name) as tls,
            ):
                tls.sendall(b"x")
            verified = True
        except ssl.SSLCertVerificationError:
            verified = False
        thread.join(5)
        assert verified is trusted, name
    listener.close()
