"""`make bench-router`: the builtin router beside a direct connection and nginx (with and without `mirror`).

Everything runs on 127.0.0.1 and every row is measured in the same run, one after another:

  primary     nginx answering `{"prediction": 1}` from its config (benchmarks/upstreams.py),
              started once; one worker, so it is not what limits the rows in front of it
  candidates  asyncio servers (uvloop when importable), one process per behaviour: fast,
              50 ms, 200 ms, failing (500 KeyError), resetting, hanging
  nginx       a fresh nginx per row (own prefix and config in a temp dir, one worker),
              proxy_pass to the primary over a keepalive upstream; the mirror rows add
              `mirror` to a location that proxies to the candidate with 2 s connect/read
              timeouts, so a hanging candidate costs at most 2 s per request
  router      a fresh `shadowctl router` per row, --candidate-timeout 2s --max-in-flight 256,
              --mirror-percent 0 (no mirror) or 100, pair records into a temp dir

Load, all POST /predict with a small JSON body, keep-alive:

  closed loop     wrk -t1 -cC -dSs --latency (default -c32, S = --seconds): throughput and
                  the primary path's latency (what the client sees) for every row
  one connection  wrk -t1 -c1 for S/2 s: the per-request overhead of each hop
  open loop       500 requests/s for S s, latency when nothing is saturated, twice:
                  evenly spaced: a small asyncio client sends one request every 2 ms whatever
                    the answers do (a pool of keep-alive connections); the targets use these
                  hey -c 10 -q 50 (-q is per worker): hey's workers tick together, so this is
                    bursts of 10 requests every 20 ms; shown for information (0.1 ms resolution)

Each row is warmed up (1-2 s of the same load) before it is measured. One table
(benchmarks/table.py), one line per measurement: the router's value beside the same measurement
of its reference in the same run (nginx with the same mirroring and process count, the direct
connection, or for the isolation targets the router's own fast-candidate row), the ratio, the
target and whether it is met. Under it: nginx's own behaviour with slow candidates, for contrast,
what the router did with the copies, and each row's CPU.

Why a throughput target is missed, measured: over each closed-loop and scaling row's measured
seconds, the CPU (user + system, /proc/PID/stat) of the proxy under test with its children (the
router's worker processes; nginx's master and workers), of the primary and of the candidate, of
wrk (getrusage), and of the whole machine (/proc/stat: softirq, mostly the kernel's loopback TCP
work, apart). The table shows the proxy's CPU per request served, the router's beside nginx's
(their ratio: how much more CPU the router spends on a request; 1 s / that = the req/s one core
can serve), and for the target rows the cores each process kept busy, softirq, the rest of the
machine (other work on the shared cores) and the idle cores, with what was saturated: the proxy
(at the cores its processes can use), wrk (one thread) or the machine (benchmarks/router/cpu.py).

  --seconds S   seconds per row (default 10; --seconds 2 for a quick look)
  --soak N      instead of the table: drive the router with the resetting candidate (--soak-candidate) for N s
                and sample its RSS and open fds every 10 s (flat = last within 10% of first)
  --only TEXT   only rows whose name contains TEXT (plus the direct and nginx reference rows)
  --keep        keep the temp dir (configs, logs, records) and print its path

The package: processes.py (starting, stopping and finding processes), load.py (wrk, hey, the paced
client), cpu.py (CPU accounting), scenarios.py (candidates, targets, rows), bench.py (running the
rows), report.py (the table), soak.py (--soak), __main__.py (the command line).
"""
