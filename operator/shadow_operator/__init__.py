"""shadow-operator: shadow rollouts of ML models on Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One home for the version: pyproject.toml. The image tag, the manifests' image
    # (`make manifests`) and the Makefile's IMG all follow it.
    __version__ = version("shadow-operator")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0.0.0+unknown"
