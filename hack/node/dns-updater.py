#!/usr/bin/env python3
"""Keep dnsmasq's hosts file in step with the cluster's Services (stdlib only).

The local node has no CoreDNS (Debian 12 does not package it). dnsmasq, bound to the
bridge address, answers for cluster.local from one addn-hosts file; this program
lists Services once, then follows a watch (no polling), rewrites the file with
``<clusterIP> <name>.<namespace>.svc.<domain>`` lines whenever the set changes, and
sends dnsmasq SIGHUP so it rereads the file.

    dns-updater.py --server https://IP:PORT --ca CA --token-file F \
        --hosts-file F --dnsmasq-pid-file F [--domain cluster.local]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


def log(msg: str) -> None:
    print(f"[dns-updater] {msg}", file=sys.stderr, flush=True)


class Updater:
    def __init__(self, args: argparse.Namespace) -> None:
        self.server = args.server.rstrip("/")
        self.domain = args.domain
        self.hosts_file = args.hosts_file
        self.pid_file = args.dnsmasq_pid_file
        with open(args.token_file) as f:
            self.token = f.read().strip()
        self.ctx = ssl.create_default_context(cafile=args.ca)
        self.services: dict[str, tuple[str, str, str]] = {}  # uid -> (ns, name, clusterIP)
        self.written: str | None = None

    def request(self, path: str, timeout: float):
        req = urllib.request.Request(
            self.server + path,
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
        )
        return urllib.request.urlopen(req, context=self.ctx, timeout=timeout)

    def remember(self, svc: dict) -> None:
        meta, spec = svc["metadata"], svc.get("spec", {})
        ip = spec.get("clusterIP") or ""
        if ip and ip != "None":
            self.services[meta["uid"]] = (meta["namespace"], meta["name"], ip)
        else:  # headless or ExternalName: nothing this file can answer
            self.services.pop(meta["uid"], None)

    def publish(self) -> None:
        lines = sorted(f"{ip} {name}.{ns}.svc.{self.domain}\n" for ns, name, ip in self.services.values())
        content = "".join(lines)
        if content == self.written:
            return
        tmp = self.hosts_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(content)
        os.replace(tmp, self.hosts_file)  # dnsmasq never reads a half-written file
        self.written = content
        try:
            with open(self.pid_file) as f:
                os.kill(int(f.read().strip()), signal.SIGHUP)
        except (OSError, ValueError) as exc:
            log(f"could not signal dnsmasq: {exc}")
        log(f"{len(lines)} service names published")

    def list_services(self) -> str:
        with self.request("/api/v1/services", timeout=30) as resp:
            body = json.load(resp)
        self.services.clear()
        for svc in body.get("items", []):
            self.remember(svc)
        self.publish()
        return body["metadata"]["resourceVersion"]

    def watch(self, rv: str) -> str:
        path = f"/api/v1/services?watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion={rv}"
        with self.request(path, timeout=330) as resp:
            for raw in resp:
                event = json.loads(raw)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise RuntimeError(obj.get("message", "watch error"))
                rv = obj["metadata"]["resourceVersion"]
                if kind in ("ADDED", "MODIFIED"):
                    self.remember(obj)
                elif kind == "DELETED":
                    self.services.pop(obj["metadata"]["uid"], None)
                if kind != "BOOKMARK":
                    self.publish()
        return rv  # the server ended the watch (timeoutSeconds): resume from here

    def run(self) -> None:
        rv = None
        while True:
            try:
                if rv is None:
                    rv = self.list_services()
                rv = self.watch(rv)
            except Gone:
                rv = None
            except (OSError, urllib.error.URLError, ValueError, RuntimeError, KeyError) as exc:
                log(f"{type(exc).__name__}: {exc}; listing again in 1s")
                rv = None
                time.sleep(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--hosts-file", required=True)
    p.add_argument("--dnsmasq-pid-file", required=True)
    p.add_argument("--domain", default="cluster.local")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Updater(p.parse_args()).run()


if __name__ == "__main__":
    main()
