"""Prometheus metric names and labels: what the router exports and the job queries.

`segment` is `all` or `<segment name>=<bucket>` (one series per segment dimension, so a
request counts once in `all` and once in each dimension). Unknown buckets fold into
`<name>=other`, so cardinality is bounded by the spec.
"""

REQUESTS_TOTAL = "shadow_requests_total"  # {role, segment, outcome}
REQUEST_DURATION = "shadow_request_duration_seconds"  # histogram {role, segment}
# {result: sampled|not_matched|not_sampled|dropped|timeout|skipped_large_body|circuit_open}
# (not_matched: left out by traffic.mirrorMethods or traffic.match, router/mirror_policy.py)
MIRROR_TOTAL = "shadow_mirror_total"
PAIRS_TOTAL = "shadow_pairs_total"  # {segment, agree: true|false|none}
PAIR_ABS_DIFF = "shadow_pair_abs_diff"  # histogram {segment}
FEATURE_MISSING_TOTAL = "shadow_feature_missing_total"  # {feature, role}
RECORDS_DROPPED_TOTAL = "shadow_records_dropped_total"  # {reason: sink_error|sampled_out|queue_full|spool_full}

# On every series a router or recorder exports: which ShadowDeployment ("namespace/name"), so a
# Prometheus shared by many objects answers the job about its own object only.
SHADOW_LABEL = "shadow"
ALL_SEGMENTS = "all"
# Histogram buckets from 1 ms to 30 s, in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def segment_label(name: str, bucket: str) -> str:
    return f"{name}={bucket}"
