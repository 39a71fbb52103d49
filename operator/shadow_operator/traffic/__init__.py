"""The data path: the builtin mirroring router and the recorder sidecar (`shadowctl router|recorder`).

config: RouterConfig from router.json and flags. extract: segments, features, prediction and
error text from bodies (pure). sink: rotating JSON Lines writer. metrics: Prometheus text
registry. upstream: keep-alive HTTP/1.1 client pool. proxy: the asyncio server (router and
recorder modes). admin: /metrics, /healthz, /readyz. cli: the two subcommands.
"""
