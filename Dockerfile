# syntax=docker/dockerfile:1
# shadow-operator: the operator, the builtin mirroring router and the comparison job
# all run from this one image (the Deployment passes it on as SHADOW_OPERATOR_IMAGE).
#
#   docker build -t shadow-operator:0.1.0 .
#   make images      (buildah, on a Debian base: PYTHON_IMAGE=localhost/shadow-base:bookworm)
#
# PYTHON_IMAGE: any Debian-like image with python3 (>= 3.11) and its venv module; the official
# python:3.11-slim or Debian's own python3 + python3-venv (which has no `python` command).
# A CA bundle for pip (a TLS-intercepting proxy's) can be given as the build secret "pip-ca":
#   docker build --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt ...

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# The venv's interpreter is a symlink to the base's python3 (/usr/local/bin in python:*-slim,
# /usr/bin in Debian's), which the final stage, on the same base, has at the same path.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package is built from: pyproject.toml, its readme and the source tree.
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    pip install --no-cache-dir . \
    && shadowctl --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.description="Kubernetes operator for shadow rollouts of ML models" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/venv /opt/venv
# A numeric, unprivileged user (runAsNonRoot can verify it) with a passwd/group entry, so that
# getpwuid() answers for it (kopf asks getpass.getuser(), which reads USER first).
RUN echo 'shadow-operator:x:65532:65532:shadow-operator:/tmp:/usr/sbin/nologin' >>/etc/passwd \
    && echo 'shadow-operator:x:65532:' >>/etc/group
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    USER=shadow-operator
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["shadowctl"]
CMD ["run"]
