"""shadow-operator: shadow rollouts of ML models on Kubernetes."""

__version__ = "0.1.0"
