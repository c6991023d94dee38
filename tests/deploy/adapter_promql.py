"""Evaluates the prometheus-adapter rule's queries with promtool's rule unit tests, when promtool is installed
(Debian's `prometheus` package; too large to install in CI for this alone, so elsewhere the queries' structure
is all that is checked). The adapter fills <<.LabelMatchers>> and <<.GroupBy>> in as below for a Pods metric.

Two pods in the input: one whose requests waited 30 ms each (30 000 us of queue time per request, one request
every scrape), one that served nothing. The metric must read 0.03 (seconds) and 0, not NaN.
"""
import os
import shutil
import subprocess
import tempfile

import yaml

NAMESPACE = "halfserve-test"
BUSY, IDLE = "halfserve-busy", "halfserve-idle"
SCRAPE = "15s"


def expand(query):
    return (query.replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"{BUSY}|{IDLE}"')
                 .replace("<<.GroupBy>>", "pod"))


def check(checks, rule, series_names):
    promtool = shutil.which("promtool")
    if promtool is None:
        print("note: no promtool here (Debian's prometheus package), so the adapter's PromQL is not evaluated")
        return
    sum_name = next((name for name in series_names if name.endswith("_sum")), None)
    count_name = next((name for name in series_names if name.endswith("_count")), None)
    if sum_name is None or count_name is None:
        checks.require(False, f"adapter: no _sum/_count series among {sorted(series_names)}")
        return

    def series(name, pod, values):
        labels = f'__name__="{name}",namespace="{NAMESPACE}",pod="{pod}",model_name="punct"'
        return {"series": "{" + labels + "}", "values": values}

    tests = {
        "rule_files": [],
        "evaluation_interval": SCRAPE,
        "tests": [{
            "interval": SCRAPE,
            "input_series": [
                series(sum_name, BUSY, "0+30000x40"), series(count_name, BUSY, "0+1x40"),
                series(sum_name, IDLE, "0x40"), series(count_name, IDLE, "0x40"),
            ],
            "promql_expr_test": [
                {"expr": expand(rule["metricsQuery"]), "eval_time": "5m",
                 "exp_samples": [{"labels": f'{{pod="{BUSY}"}}', "value": 0.03},
                                 {"labels": f'{{pod="{IDLE}"}}', "value": 0}]},
                {"expr": f"count({rule['seriesQuery']})", "eval_time": "5m",
                 "exp_samples": [{"labels": "{}", "value": 2}]},
            ],
        }],
    }
    with tempfile.TemporaryDirectory(prefix="halfserve-promql-") as folder:
        path = os.path.join(folder, "adapter_test.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(tests, handle, sort_keys=False)
        ran = subprocess.run([promtool, "test", "rules", path], capture_output=True, text=True, timeout=60)
    output = (ran.stdout + ran.stderr).strip()
    checks.require(ran.returncode == 0, f"adapter: promtool test rules on the metricsQuery failed: {output}")
    if ran.returncode == 0:
        print(f"ok: promtool evaluated the adapter's metricsQuery: busy pod 0.03 s, idle pod 0 ({output.splitlines()[-1]})")
