# syntax=docker/dockerfile:1
# shadow-operator: the operator, the builtin mirroring router and the comparison job
# all run from this one image (the Deployment passes it on as SHADOW_OPERATOR_IMAGE).
#
#   docker build -t shadow-operator:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package is built from: pyproject.toml, its readme and the source tree.
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
RUN pip install --no-cache-dir . \
    && shadowctl --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.description="Kubernetes operator for shadow rollouts of ML models" \
      org.opencontainers.image.licenses="Apache-2.0"
# The venv's interpreter links to /usr/local/bin/python3.11, which both stages share.
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric, unprivileged user (no passwd entry needed): runAsNonRoot can verify it.
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["shadowctl"]
CMD ["run"]
