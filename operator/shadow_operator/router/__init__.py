"""The router: the builtin mirroring router and the recorder sidecar (`shadowctl router|recorder`).

config: RouterConfig from router.json and flags. server: the asyncio server core both share;
mirror: the router (ShadowRouter), which copies what mirror_policy selects; recorder: the
recorder sidecar. http1: the client connection protocol; messages: its header and target rules
(pure); reaper: its deadlines. upstream: keep-alive HTTP/1.1 client pool; breaker: the
candidate's circuit breaker. extract: segments, features, prediction and error text from bodies
(pure); redaction: secrets scrubbed from them. sink: rotating JSON Lines writer; shipper: sends
its files to the collector. metrics: Prometheus text registry; admin: /metrics, /healthz,
/readyz. workers: `--workers N` processes. cli: the subcommands.
"""
