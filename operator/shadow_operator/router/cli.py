"""`shadowctl router` and `shadowctl recorder`: the data path's two entry points."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import sys

from ..contract.records import RECORDER_ROLES
from .admin import AdminServer, stop_on_signals
from .config import ConfigError, RouterConfig, build_config, load_file, parse_listen, parse_seconds
from .metrics import ShadowMetrics
from .mirror import ShadowRouter
from .recorder import Recorder
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
    router.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the port (SO_REUSEPORT), one event loop each; the parent serves the "
        "summed /metrics and restarts workers that exit (default: the CPU limit, at least 1; 1 = one process)",
    )
    _common(router)
    router.set_defaults(handler=lambda args: _serve(args, recorder=False))

    recorder = commands.add_parser(
        "recorder",
        help="run the recorder sidecar in front of one model (Istio mode): one-sided records",
        description="Forwards every request to one upstream unchanged and records its answer, keyed by "
        "the request id, so the comparison job can join primary and candidate.",
    )
    recorder.add_argument("--upstream", required=True, help="the model's URL, e.g. http://127.0.0.1:8080")
    recorder.add_argument("--role", required=True, choices=RECORDER_ROLES, help="which model this recorder fronts")
    _common(recorder)
    recorder.set_defaults(handler=lambda args: _serve(args, recorder=True))

    collector = commands.add_parser(
        "collector",
        help="run the record collector the routers and recorders ship their records to",
        description="Stores the JSON Lines record files every router and recorder replica ships "
        "(POST /v1/records/<source>/<file>?offset=N, idempotent) under --records, deletes the oldest "
        "past --retention-bytes or --retention-age, and serves them to the comparison job "
        "(GET /v1/records). Metrics and probes on the admin listener.",
    )
    collector.add_argument(
        "--listen", default="0.0.0.0:8090", help="HOST:PORT of the record API (default 0.0.0.0:8090)"
    )
    collector.add_argument("--admin-listen", default="0.0.0.0:9901", help="HOST:PORT of /metrics, /healthz, /readyz")
    collector.add_argument("--records", required=True, help="directory the records are kept in")
    collector.add_argument(
        "--retention-bytes", type=int, default=2 << 30, help="total bytes kept; oldest files deleted beyond (2 GiB)"
    )
    collector.add_argument("--retention-age", default="336h", help="files older than this are deleted (336h)")
    collector.add_argument("--verbose", "-v", action="store_true")
    collector.set_defaults(handler=_collect)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="router.json as the operator mounts it (traffic, recording, URLs)")
    parser.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT of the proxy (default 0.0.0.0:8080)")
    parser.add_argument("--admin-listen", default="0.0.0.0:9901", help="HOST:PORT of /metrics, /healthz, /readyz")
    parser.add_argument("--records", help="directory of the record files (default: recording.sink.path)")
    parser.add_argument("--sample-rate", type=float, help="fraction of records written, 0 to 1")
    parser.add_argument("--shadow", help="namespace/name written into records (default: from the config)")
    parser.add_argument("--primary-timeout", help="how long the primary may take before a 504 (default 60s)")
    parser.add_argument(
        "--drain-delay",
        default="0s",
        help="on SIGTERM, keep serving (not ready) this long before closing, e.g. 5s in a Pod (default 0s)",
    )
    parser.add_argument(
        "--collector",
        help="ship record files to this collector, e.g. http://recommender-collector:8090 (default: from the "
        "config; without one the files stay in --records)",
    )
    parser.add_argument("--ship-interval", default="2s", help="how often records are shipped (default 2s)")
    parser.add_argument(
        "--spool-bytes", type=int, default=512 << 20, help="local bytes kept while the collector is unreachable"
    )
    parser.add_argument(
        "--candidate-image", help="the candidate's image, written into its records (default: from the config)"
    )
    parser.add_argument("--verbose", "-v", action="store_true")


def _config(args: argparse.Namespace, recorder: bool) -> RouterConfig:
    data = load_file(args.config) if args.config else None
    common = {
        "shadow": args.shadow,
        "records_dir": args.records,
        "sample_rate": args.sample_rate,
        "primary_timeout": args.primary_timeout,
        "collector": args.collector,
        "candidate_image": args.candidate_image,
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
        shipping = {"ship_interval": parse_seconds(args.ship_interval), "spool_bytes": args.spool_bytes}
        if shipping["ship_interval"] <= 0 or args.spool_bytes <= 0:
            raise ConfigError("--ship-interval and --spool-bytes must be above 0")
        drain_delay = parse_seconds(args.drain_delay)
        workers = 1 if recorder else _workers(args)
    except ConfigError as error:
        print(f"shadowctl {args.command}: {error}", file=sys.stderr)
        return 3
    if workers > 1:
        from .workers import supervise

        spec = {k: v for k, v in vars(args).items() if isinstance(v, str | int | float | bool | None)}
        spec.update(workers=1, drain_delay="0s")  # the parent keeps serving through the drain delay
        return asyncio.run(supervise(spec, workers, listen, admin_listen, config.shadow, drain_delay))
    _tune_gc()
    return _run_loop(run(config, listen, admin_listen, recorder, shipping=shipping, drain_delay=drain_delay))


def _workers(args: argparse.Namespace) -> int:
    from .workers import cpu_limit, reuseport_supported

    workers = args.workers if args.workers is not None else cpu_limit()
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if workers > 1 and not reuseport_supported():
        log.warning("--workers %d needs SO_REUSEPORT (Linux): running one process", workers)
        return 1
    return workers


def _run_loop(main) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def serve_worker(args: argparse.Namespace, link) -> int:
    """One of `--workers N` (router/workers.py): the router on a SO_REUSEPORT socket, its share of
    the limits and of the spool, its metrics to the parent over `link` instead of an admin port."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s %(levelname)s worker-{link.index} %(name)s: %(message)s",
    )
    from .workers import share

    config = _config(args, recorder=False)  # the parent checked it
    traffic = config.traffic
    config = dataclasses.replace(
        config,
        traffic=traffic.model_copy(
            update={
                "max_in_flight": share(traffic.max_in_flight, link.count),
                "max_connections": share(traffic.max_connections, link.count),
            }
        ),
    )
    shipping = {"ship_interval": parse_seconds(args.ship_interval), "spool_bytes": share(args.spool_bytes, link.count)}
    _tune_gc()
    return _run_loop(run(config, parse_listen(args.listen), None, False, shipping=shipping, worker=link))


def _collect(args: argparse.Namespace) -> int:
    from .collector import run as run_collector

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        listen, admin_listen = parse_listen(args.listen), parse_listen(args.admin_listen)
        age = parse_seconds(args.retention_age)
        if args.retention_bytes <= 0 or age <= 0:
            raise ConfigError("--retention-bytes and --retention-age must be above 0")
    except ConfigError as error:
        print(f"shadowctl collector: {error}", file=sys.stderr)
        return 3
    return asyncio.run(run_collector(args.records, listen, admin_listen, args.retention_bytes, age))


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
    shipping: dict | None = None,
    drain_delay: float = 0.0,
    worker=None,
) -> int:
    """Serve until SIGTERM/SIGINT (or `stop` is set); then drain, flush the sink and return 0.

    `drain_delay`: seconds between the signal and closing the listener, answering /readyz 503 but
    still serving. A deleted Pod stays in the Service's iptables rules until kube-proxy has seen it
    leave the endpoints; closing at once would refuse the connections still sent to it.

    `worker`: a workers.WorkerLink when this is one of `--workers N`: the port is shared
    (SO_REUSEPORT), there is no admin listener (`admin_listen` None; the parent asks for the
    metrics over the link) and the record files carry the worker's slot.
    """
    draining = asyncio.Event()
    from .extract import Extractor

    buckets = {s.name: s.known_buckets() for s in Extractor(config.recording).segments}
    metrics = ShadowMetrics(buckets, shadow=config.shadow)
    sink = RecordSink(
        config.records_dir,
        metrics,
        config.recording.sink.rotate_bytes,
        config.recording.sample_rate,
        collector=config.collector,
        worker=(worker.index, worker.count) if worker else None,
        **(shipping or {}),
    )
    proxy = (Recorder if recorder else ShadowRouter)(config, metrics, sink)
    admin = AdminServer(
        metrics.registry, ready=lambda: proxy.server is not None and not proxy.stopping and not draining.is_set()
    )
    stop = stop_on_signals(stop)
    if worker is not None:
        try:
            port = await proxy.start(*listen, reuse_port=True)
            await worker.start(metrics.registry, stop, port)
        except OSError as error:
            print(f"shadowctl: worker {worker.index} cannot listen: {error}", file=sys.stderr)
            sink.close()
            return 3
        await stop.wait()
        log.info("stopping: draining in-flight requests")
        await proxy.stop()
        await asyncio.get_running_loop().run_in_executor(None, sink.close)
        await worker.close()
        return 0
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
    log.info("%s; listening on %s:%d, admin on %s:%d; records %s", mode, listen[0], port, admin_listen[0],
             admin_port, f"shipped to {config.collector}" if config.collector else f"kept in {config.records_dir}")  # fmt: skip
    print(f"listening {port} admin {admin_port}", flush=True)
    await stop.wait()
    if drain_delay > 0:
        draining.set()
        log.info("stopping: not ready, still serving for %.1fs while endpoints converge", drain_delay)
        await asyncio.sleep(drain_delay)
    log.info("stopping: draining in-flight requests")
    await proxy.stop()
    await admin.stop()
    await asyncio.get_running_loop().run_in_executor(None, sink.close)
    return 0
