"""The contracts the three programs share: records, the report, metric names, JSON paths, names, reasons."""
