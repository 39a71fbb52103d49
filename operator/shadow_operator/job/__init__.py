"""The comparison job: records and metrics in, a report with a verdict out."""
