"""Summary of one scripts/replicas-demo.sh run, from the files it left in its temporary folder: halfserve bench's
reports (bench-one-N.md, bench-two-N.md, bench-grpc.md), the stop phases' events (events-PHASE.txt: wall-clock time,
name) and per-request records (records-PHASE.csv, from load.py), and haproxy's log (one line per request: which
replica answered, retries). Prints markdown; writes JSON to --output (a temporary name, then renamed).
"""

import argparse
import collections
import csv
import datetime
import json
import math
import os
import re
import sys

SWEEP_ROW = re.compile(r"^\| (\d+) \| ([\d.]+) \| (\S+) \| (\S+) \| (\S+) \| (\d+) \| (\d+) \|$")
FIRST_ERROR = re.compile(r"^- \d+ clients: .*first: (.*)$")
LOG_FIELD = re.compile(r"(\w+)=(\S+)")
PHASES = [("sigterm", "SIGTERM (as Kubernetes stops a pod)"), ("sigkill", "SIGKILL (a crash)")]


def read_bench(path):
    """The concurrency point of a halfserve bench --target report."""
    with open(path, encoding="utf-8") as report:
        lines = report.read().splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("| clients | requests/s")), None)
    rows = [SWEEP_ROW.match(line) for line in lines[header + 2:]] if header is not None else []
    rows = [row for row in rows if row]
    if len(rows) != 1:
        raise SystemExit(f"summary: {path} has no single concurrency row")
    clients, rate, p50, p90, p99, requests, errors = rows[0].groups()
    first_error = next((m.group(1) for m in map(FIRST_ERROR.match, lines) if m), "")
    return {"clients": int(clients), "requests_per_second": float(rate), "p50": p50, "p90": p90, "p99": p99,
            "requests": int(requests), "errors": int(errors), "first_error": first_error}


def read_cpu(path):
    """What two control.py cpu-snapshot lines say about the run between them, in cores (CPU seconds per second)."""
    with open(path, encoding="utf-8") as lines:
        before, after = (json.loads(line) for line in lines)
    seconds = after["time"] - before["time"]
    return {"replicas_and_haproxy_cores": round((after["processes"] - before["processes"]) / seconds, 2),
            "machine_busy_cores": round((after["busy"] - before["busy"]) / seconds, 2),
            "replicas_and_haproxy_cpu_seconds": round(after["processes"] - before["processes"], 1)}


def read_events(path):
    events = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            time, name, *detail = line.split()
            events[name] = (float(time), " ".join(detail))
    return events


def read_records(path):
    with open(path, encoding="utf-8", newline="") as table:
        return [{"id": row["id"], "start": float(row["start"]), "end": float(row["end"]), "ok": row["ok"] == "1",
                 "problem": row["problem"]} for row in csv.DictReader(table)]


def read_haproxy_log(path):
    """Request id -> haproxy's view of it (server, status, retries, termination state)."""
    entries = {}
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            fields = dict(LOG_FIELD.findall(line))
            if fields.get("id", "-") != "-":
                entries[fields["id"]] = fields
    return entries


def analyse_phase(events, records, haproxy):
    kill = events["kill"][0]
    start, end = events["start"][0], events["end"][0]

    def relative(time):
        return round(time - kill, 3)
    in_flight = [r for r in records if r["start"] <= kill <= r["end"]]
    failures = [r for r in records if not r["ok"]]
    retried = [haproxy[r["id"]] for r in records if r["id"] in haproxy and haproxy[r["id"]]["retries"] != "0"]
    # Per second around the kill: what completed, and on which replica (haproxy's log).
    timeline = collections.defaultdict(collections.Counter)
    for record in records:
        second = math.floor(record["end"] - kill)
        entry = haproxy.get(record["id"], {})
        timeline[second]["ok" if record["ok"] else "failed"] += 1
        if record["ok"]:
            timeline[second][entry.get("server", "unknown")] += 1
    return {
        "signal_to": events["kill"][1],
        "events_seconds_from_kill": {name: relative(time) for name, (time, _) in events.items()},
        "exit_status": events["exited"][1],
        "requests": len(records),
        "ok": len(records) - len(failures),
        "failed": len(failures),
        "ok_per_second": round((len(records) - len(failures)) / (end - start), 1),
        "in_flight_at_kill": len(in_flight),
        "in_flight_at_kill_retried_by_haproxy": sum(
            1 for r in in_flight if r["id"] in haproxy and haproxy[r["id"]]["retries"] != "0"),
        "failed_in_flight_at_kill": sum(1 for r in failures if r["start"] <= kill <= r["end"]),
        "failed_not_in_flight_at_kill": sum(1 for r in failures if not r["start"] <= kill <= r["end"]),
        "haproxy_retried": len(retried),
        "haproxy_redispatched": sum(1 for entry in retried if entry["retries"].startswith("+")),
        "failures": [{"id": r["id"], "start": relative(r["start"]), "end": relative(r["end"]),
                      "in_flight_at_kill": r["start"] <= kill <= r["end"], "problem": r["problem"],
                      "haproxy": haproxy.get(r["id"])} for r in failures],
        "timeline_by_completion_second": {str(second): dict(counts) for second, counts in sorted(timeline.items())},
    }


def mean_rate(runs, replicas):
    rates = [run["bench"]["requests_per_second"] for run in runs if run["replicas"] == replicas]
    return round(sum(rates) / len(rates), 1)


def machine():
    model, flags = "unknown", set()
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {"cpu": model, "cores": os.cpu_count(), "amx": any(f.startswith("amx") for f in flags),
            "avx512_fp16": "avx512_fp16" in flags, "avx512_bf16": "avx512_bf16" in flags}


def markdown(summary):
    m, t, s = summary["machine"], summary["throughput"], summary["settings"]
    out = [f"## halfserve replicas behind haproxy ({summary['date']})", "",
           f"CPU {m['cpu']}, {m['cores']} cores (AMX {'yes' if m['amx'] else 'no'}, AVX512-FP16 "
           f"{'yes' if m['avx512_fp16'] else 'no'}); load average at start {m['loadavg_start']}, at end "
           f"{m['loadavg_end']}. Replica threads: {s['threads']}.", "",
           f"Throughput through haproxy (halfserve bench --target, REST :predict, batch 1, 64 tokens, "
           f"{s['clients']} clients, {s['bench_seconds']} s per run, one and two replicas alternated):", "",
           "| round | replicas | requests/s | p50 | p99 | errors | cores used by replicas + haproxy | "
           "requests per their CPU-second | machine busy (cores) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in t["runs"]:
        b, c = row["bench"], row["cpu"]
        out.append(f"| {row['round']} | {row['replicas']} | {b['requests_per_second']} | {b['p50']} | {b['p99']} | "
                   f"{b['errors']} | {c['replicas_and_haproxy_cores']} | {c['requests_per_cpu_second']} | "
                   f"{c['machine_busy_cores']} |")
    out += ["", f"Mean: one replica {t['one_replica']} requests/s, two {t['two_replicas']} requests/s, "
                f"ratio {t['ratio']}.", ""]
    g = summary["grpc"]
    out += [f"gRPC Predict through haproxy's HTTP/2 frontend, two replicas, 5 s: {g['requests_per_second']} "
            f"requests/s, p50 {g['p50']}, {g['errors']} errors of {g['requests']}"
            + (f" (first: {g['first_error']})" if g["errors"] else "") + ".", "",
            f"A replica stopped under load (load.py: {s['clients']} clients, :punctuate of 6 texts per request, "
            f"{s['phase_seconds']} s per phase; times in seconds from the signal):", "",
            "| phase | requests | failed | in flight at the kill | of them failed | other failures | "
            "retried by haproxy | exited | restarted | ready | back in haproxy |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, title in PHASES:
        p = summary["phases"][name]
        e = p["events_seconds_from_kill"]
        out.append(f"| {title}, {p['signal_to']} | {p['requests']} | {p['failed']} | {p['in_flight_at_kill']} "
                   f"({p['in_flight_at_kill_retried_by_haproxy']} retried) | "
                   f"{p['failed_in_flight_at_kill']} | {p['failed_not_in_flight_at_kill']} | {p['haproxy_retried']} | "
                   f"+{e['exited']} | +{e['restart']} | +{e['ready']} | +{e['lb-up']} |")
    for name, title in PHASES:
        for failure in summary["phases"][name]["failures"][:10]:
            out.append(f"- {name} {failure['id']}: {failure['start']:+.3f} to {failure['end']:+.3f} s"
                       f"{' (in flight at the kill)' if failure['in_flight_at_kill'] else ''}: {failure['problem']}")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--bench-seconds", type=int, required=True)
    parser.add_argument("--phase-seconds", type=int, required=True)
    parser.add_argument("--threads", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    def work(name):
        return os.path.join(args.work, name)

    runs = []
    for round_number in range(1, 1000):
        if not os.path.exists(work(f"bench-one-{round_number}.md")):
            break
        for replicas, name in ((1, "one"), (2, "two")):
            bench = read_bench(work(f"bench-{name}-{round_number}.md"))
            cpu = read_cpu(work(f"cpu-{name}-{round_number}.jsonl"))
            cpu["requests_per_cpu_second"] = round(bench["requests"] / cpu["replicas_and_haproxy_cpu_seconds"], 1)
            runs.append({"round": round_number, "replicas": replicas, "bench": bench, "cpu": cpu})
    one, two = mean_rate(runs, 1), mean_rate(runs, 2)
    haproxy = read_haproxy_log(work("haproxy.log"))
    with open(work("loadavg-start"), encoding="utf-8") as start, open("/proc/loadavg", encoding="utf-8") as end:
        loadavg = {"loadavg_start": " ".join(start.read().split()[:3]), "loadavg_end": " ".join(end.read().split()[:3])}
    summary = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine() | loadavg,
        "settings": {"clients": args.clients, "bench_seconds": args.bench_seconds,
                     "phase_seconds": args.phase_seconds, "threads": args.threads},
        "throughput": {"runs": runs, "one_replica": one, "two_replicas": two,
                       "ratio": round(two / one, 2) if one > 0 else None},
        "grpc": read_bench(work("bench-grpc.md")),
        "phases": {name: analyse_phase(read_events(work(f"events-{name}.txt")), read_records(work(f"records-{name}.csv")),
                                       haproxy) for name, _ in PHASES},
    }
    temporary = f"{args.output}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(summary, out, indent=1, ensure_ascii=False)
        out.write("\n")
    os.replace(temporary, args.output)
    print(markdown(summary), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
