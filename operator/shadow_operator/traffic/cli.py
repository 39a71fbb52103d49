"""`shadowctl router` and `shadowctl recorder`: the data path's two entry points."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys

from ..records import ROLES
from .admin import AdminServer
from .config import ConfigError, RouterConfig, build_config, load_file, parse_listen
from .metrics import ShadowMetrics
from .proxy import ShadowProxy
from .sink import RecordSink

log = logging.getLogger(__name__)


def add_commands(commands: argparse._SubParsersAction) -> None:
    router = commands.add_parser(
        "router",
        help="run the builtin mirroring router (forward to the primary, copy a share to the candidate)",
        description="Forwards every request to the primary and returns its answer unchanged; copies "
        "mirrorPercent of them to the candidate, records both answers as pair records and exports "
        "Prometheus metrics on the admin listener. Flags override the --config file.",
    )
    router.add_argument("--primary", help="primary URL, e.g. http://recommender-primary:8080")
    router.add_argument("--candidate", help="candidate URL")
    router.add_argument("--mirror-percent", type=float, help="percent of requests copied, 0 to 100")
    router.add_argument("--candidate-timeout", help="e.g. 2s or 500ms")
    router.add_argument("--max-in-flight", type=int, help="copies in flight at once; beyond it dropped")
    router.add_argument("--max-body-bytes", type=int, help="larger request bodies are not mirrored")
    _common(router)
    router.set_defaults(handler=lambda args: _serve(args, recorder=False))

    recorder = commands.add_parser(
        "recorder",
        help="run the recorder sidecar in front of one model (Istio mode): one-sided records",
        description="Forwards every request to one upstream unchanged and records its answer, keyed by "
        "the request id, so the comparison job can join primary and candidate.",
    )
    recorder.add_argument("--upstream", required=True, help="the model's URL, e.g. http://127.0.0.1:8080")
    recorder.add_argument("--role", required=True, choices=ROLES, help="which model this recorder fronts")
    _common(recorder)
    recorder.set_defaults(handler=lambda args: _serve(args, recorder=True))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="router.json as the operator mounts it (traffic, recording, URLs)")
    parser.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT of the proxy (default 0.0.0.0:8080)")
    parser.add_argument("--admin-listen", default="0.0.0.0:9901", help="HOST:PORT of /metrics, /healthz, /readyz")
    parser.add_argument("--records", help="directory of the record files (default: recording.sink.path)")
    parser.add_argument("--sample-rate", type=float, help="fraction of records written, 0 to 1")
    parser.add_argument("--shadow", help="namespace/name written into records (default: from the config)")
    parser.add_argument("--primary-timeout", help="how long the primary may take before a 504 (default 60s)")
    parser.add_argument("--verbose", "-v", action="store_true")


def _config(args: argparse.Namespace, recorder: bool) -> RouterConfig:
    data = load_file(args.config) if args.config else None
    common = {
        "shadow": args.shadow,
        "records_dir": args.records,
        "sample_rate": args.sample_rate,
        "primary_timeout": args.primary_timeout,
    }
    if recorder:
        return build_config(data, upstream=args.upstream, role=args.role, **common)
    config = build_config(
        data,
        primary=args.primary,
        candidate=args.candidate,
        mirror_percent=args.mirror_percent,
        candidate_timeout=args.candidate_timeout,
        max_in_flight=args.max_in_flight,
        max_body_bytes=args.max_body_bytes,
        **common,
    )
    if config.candidate is None:
        raise ConfigError("no candidate URL: give --candidate or a config file with 'candidate'")
    return config


def _serve(args: argparse.Namespace, recorder: bool) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = _config(args, recorder)
        listen, admin_listen = parse_listen(args.listen), parse_listen(args.admin_listen)
    except ConfigError as error:
        print(f"shadowctl {args.command}: {error}", file=sys.stderr)
        return 3
    _tune_gc()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(config, listen, admin_listen, recorder))
    return uvloop.run(run(config, listen, admin_listen, recorder))


def _tune_gc() -> None:
    """Keep the cyclic GC off the request path.

    Copies waiting on a slow candidate live long enough to be promoted to the oldest generation,
    and with the default thresholds that triggers full collections many times a second, each
    walking every object the imports created: milliseconds added to whichever primary answers
    are waiting (p99 3-4x higher with a 50 ms candidate). Freezing what exists at start-up takes
    it out of every collection, and a larger first generation makes collections rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


async def run(
    config: RouterConfig,
    listen: tuple[str, int],
    admin_listen: tuple[str, int],
    recorder: bool,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT (or `stop` is set); then drain, flush the sink and return 0."""
    from .extract import Extractor

    buckets = {s.name: s.known_buckets() for s in Extractor(config.recording).segments}
    metrics = ShadowMetrics(buckets)
    sink = RecordSink(config.records_dir, metrics, config.recording.sink.rotate_bytes, config.recording.sample_rate)
    proxy = ShadowProxy(config, metrics, sink, recorder=recorder)
    admin = AdminServer(metrics.registry, ready=lambda: proxy.server is not None and not proxy.stopping)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        port = await proxy.start(*listen)
        admin_port = await admin.start(*admin_listen)
    except OSError as error:
        print(f"shadowctl: cannot listen: {error}", file=sys.stderr)
        sink.close()
        return 3
    mode = f"recorder ({config.role}) for {config.primary.url}" if recorder else (
        f"router: primary {config.primary.url}, candidate {config.candidate.url}, "
        f"{config.traffic.mirror_percent}% mirrored"
    )  # fmt: skip
    log.info("%s; listening on %s:%d, admin on %s:%d", mode, listen[0], port, admin_listen[0], admin_port)
    print(f"listening {port} admin {admin_port}", flush=True)
    await stop.wait()
    log.info("stopping: draining in-flight requests")
    await proxy.stop()
    await admin.stop()
    await asyncio.get_running_loop().run_in_executor(None, sink.close)
    return 0
