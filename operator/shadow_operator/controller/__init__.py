"""The operator: kopf handlers, reconcile, observation, validation, builders and status."""
