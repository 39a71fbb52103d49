"""The Kubernetes API: the client (all I/O), its watch cache and the permissions it needs."""
