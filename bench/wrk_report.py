#!/usr/bin/env python3
"""Parse wrk's text output and summarise benchmark rounds.

    wrk_report.py parse WRK_OUTPUT_FILE        -> one JSON object on stdout
    wrk_report.py parse WRK_OUTPUT_FILE USER_S SYS_S
                                               -> the same, with the server's CPU per request
    wrk_report.py report RUNS.jsonl OUT.json   -> table on stdout, JSON file written
    wrk_report.py selftest                     -> checks the parser on sample outputs

RUNS.jsonl holds one line per measured run:
    {"target": NAME, "round": N, "run": <object from `parse`>}
and the report settings come from a JSON object in the BENCH_SETTINGS env var.
"""
import json
import os
import re
import statistics
import sys

# wrk prints times with format_time_us (us, ms, s, then m, h for long ones)
# and counts with format_metric (k, M, G); see wrk's src/units.c.
TIME_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
METRIC = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
NUM = r"([0-9]+(?:\.[0-9]+)?)"


def time_ms(text):
    m = re.fullmatch(NUM + r"(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError("not a wrk time: %r" % text)
    return float(m.group(1)) * TIME_MS[m.group(2)]


def metric(text):
    m = re.fullmatch(NUM + r"([kMGT]?)", text.strip())
    if not m:
        raise ValueError("not a wrk count: %r" % text)
    return float(m.group(1)) * METRIC[m.group(2)]


def parse(text):
    out = {"rps": None, "p50_ms": None, "p75_ms": None, "p90_ms": None, "p99_ms": None,
           "requests": None, "duration_s": None, "socket_errors": 0, "non_2xx_3xx": 0}
    m = re.search(r"^\s*" + NUM + r"([kMGT]?) requests in " + NUM + r"(us|ms|s|m|h)", text, re.M)
    if m:
        out["requests"] = int(metric(m.group(1) + m.group(2)))
        out["duration_s"] = time_ms(m.group(3) + m.group(4)) / 1e3
    m = re.search(r"^Requests/sec:\s*" + NUM + r"([kMGT]?)\s*$", text, re.M)
    if m:
        out["rps"] = metric(m.group(1) + m.group(2))
    elif out["requests"] is not None and out["duration_s"]:
        out["rps"] = out["requests"] / out["duration_s"]
    # "Latency Distribution" block (only with --latency): "     50%  412.00us"
    dist = text.split("Latency Distribution", 1)
    if len(dist) == 2:
        for pct, val in re.findall(r"^\s*(50|75|90|99)%\s+(\S+)\s*$", dist[1], re.M):
            out["p%s_ms" % pct] = time_ms(val)
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        out["non_2xx_3xx"] = int(m.group(1))
    return out


def report(runs_path, out_path):
    settings = json.loads(os.environ.get("BENCH_SETTINGS", "{}"))
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    order = []
    for r in runs:
        if r["target"] not in order:
            order.append(r["target"])
    rows = []
    for name in order:
        rs = [r for r in runs if r["target"] == name]
        ok = [r["run"] for r in rs if r["run"].get("rps") is not None]
        med = lambda key: statistics.median([x[key] for x in ok if x.get(key) is not None]) if any(
            x.get(key) is not None for x in ok) else None
        rows.append({
            "name": name,
            "rounds": len(rs),
            "rps": med("rps"),
            "p50_ms": med("p50_ms"),
            "p99_ms": med("p99_ms"),
            "cpu_us_per_req": med("cpu_us_per_req"),
            "user_us_per_req": med("user_us_per_req"),
            "rps_min": min((x["rps"] for x in ok), default=None),
            "rps_max": max((x["rps"] for x in ok), default=None),
            "errors": sum(x.get("socket_errors", 0) + x.get("non_2xx_3xx", 0) for x in ok),
            "failed_runs": len(rs) - len(ok),
            "runs": [dict(round=r["round"], **r["run"]) for r in rs],
        })
    base = next((r["rps"] for r in rows if r["name"] == "direct" and r["rps"]), None)
    for r in rows:
        r["ratio_vs_direct"] = (r["rps"] / base) if (base and r["rps"] is not None) else None
    doc = {"settings": settings, "results": rows}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    hdr = "%-20s %12s %9s %9s %9s %8s %7s %11s %12s" % (
        "name", "req/s (med)", "p50 ms", "p99 ms", "vs direct", "spread", "errors", "cpu us/req",
        "user us/req")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        spread = None
        if r["rps"] and r["rps_min"] is not None:
            spread = (r["rps_max"] - r["rps_min"]) / r["rps"] * 100
        print("%-20s %12s %9s %9s %9s %7s%% %7d %11s %12s" % (
            r["name"], fmt(r["rps"], ".0f"), fmt(r["p50_ms"], ".3f"), fmt(r["p99_ms"], ".3f"),
            fmt(r["ratio_vs_direct"], ".2f"), fmt(spread, ".1f"), r["errors"],
            fmt(r.get("cpu_us_per_req"), ".2f"), fmt(r.get("user_us_per_req"), ".2f")))
    bad = [r["name"] for r in rows if r["errors"] or r["failed_runs"]]
    if bad:
        print("WARNING: errors or failed runs for: %s (see %s)" % (", ".join(bad), out_path))


SAMPLES = [
    ("""Running 10s test @ http://127.0.0.1:40000/hello
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.35us  120.11us   5.12ms   90.00%
    Req/Sec   104.53k     3.21k  110.20k    70.00%
  Latency Distribution
     50%  598.00us
     75%  640.00us
     90%  701.00us
     99%    1.05ms
  1040214 requests in 10.00s, 168.64MB read
Requests/sec: 104011.23
Transfer/sec:     16.86MB
""", dict(rps=104011.23, p50_ms=0.598, p75_ms=0.640, p90_ms=0.701, p99_ms=1.05,
          requests=1040214, duration_s=10.0, socket_errors=0, non_2xx_3xx=0)),
    ("""Running 10s test @ http://127.0.0.1:40001/hello
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20s   300.00ms   2.00s    80.00%
    Req/Sec    52.00      10.00    80.00     75.00%
  Latency Distribution
     50%    1.10s
     75%    1.40s
     90%    1.80s
     99%    1.00m
  520 requests in 10.01s, 80.00KB read
  Socket errors: connect 0, read 3, write 0, timeout 12
  Non-2xx or 3xx responses: 7
Requests/sec:     51.95
Transfer/sec:      7.99KB
""", dict(rps=51.95, p50_ms=1100.0, p75_ms=1400.0, p90_ms=1800.0, p99_ms=60000.0,
          requests=520, duration_s=10.01, socket_errors=15, non_2xx_3xx=7)),
    # no Requests/sec line: rps falls back to requests / duration; k-suffixed count
    ("""  Latency Distribution
     50%   50.00us
     75%   60.00us
     90%   70.00us
     99%  100.00us
  1.50M requests in 1.00m, 200.00MB read
""", dict(rps=25000.0, p50_ms=0.05, p75_ms=0.06, p90_ms=0.07, p99_ms=0.1,
          requests=1500000, duration_s=60.0, socket_errors=0, non_2xx_3xx=0)),
]


def selftest():
    for text, want in SAMPLES:
        got = parse(text)
        for k, v in want.items():
            g = got[k]
            if g is None or abs(g - v) > 1e-6 * max(1.0, abs(v)):
                raise SystemExit("selftest: %s = %r, want %r" % (k, g, v))
    assert metric("1.23k") == 1230.0 and metric("2M") == 2e6 and metric("17") == 17.0
    assert time_ms("250us") == 0.25 and time_ms("3.5ms") == 3.5 and time_ms("2s") == 2000.0
    print("wrk_report selftest: %d samples ok" % len(SAMPLES))


def with_cpu(run, user_s, sys_s):
    """Adds the server's CPU time per request (user + system, and user alone: microseconds)
    to a parsed run. The kernel's share is about the same for every proxy doing the same
    socket calls; the user share is what the proxy's own code costs."""
    cpu_s = user_s + sys_s
    n = run.get("requests")
    run["cpu_s"] = cpu_s
    run["cpu_us_per_req"] = (cpu_s * 1e6 / n) if n else None
    run["user_us_per_req"] = (user_s * 1e6 / n) if n else None
    return run


def main(argv):
    if len(argv) == 3 and argv[1] == "parse":
        print(json.dumps(parse(open(argv[2]).read())))
    elif len(argv) == 5 and argv[1] == "parse":
        # parse FILE USER_SECONDS SYSTEM_SECONDS: the server's CPU time during the run (/proc)
        print(json.dumps(with_cpu(parse(open(argv[2]).read()), float(argv[3]), float(argv[4]))))
    elif len(argv) == 4 and argv[1] == "report":
        report(argv[2], argv[3])
    elif len(argv) == 2 and argv[1] == "selftest":
        selftest()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
