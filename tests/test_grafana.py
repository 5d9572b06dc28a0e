"""deploy/grafana/digits.json, the Grafana dashboard for /metrics: it loads, every panel queries the
data source chosen in its ${DS_PROMETHEUS} variable, every metric family recognizer/metrics.py names
is shown by some panel, and every expression names only metrics that exist (with their sample
suffixes: a counter's _total, a histogram's _bucket/_sum/_count) and PromQL functions that exist."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "digits.json"
METRICS_PY = ROOT / "recognizer" / "metrics.py"

KINDS = {
    "Counter": "counter",
    "CounterMetricFamily": "counter",
    "Gauge": "gauge",
    "GaugeMetricFamily": "gauge",
    "Histogram": "histogram",
}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
FUNCTIONS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "topk",
    "bottomk",
    "label_values",
    "time",
    "vector",
    "abs",
    "round",
}
KEYWORDS = {"bool", "and", "or", "unless", "offset"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def families() -> dict[str, str]:
    """Family name -> kind, for every metric constructed in recognizer/metrics.py (the client's
    Counter/Gauge/Histogram and the families the Redis collector yields at scrape time)."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(METRICS_PY.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in KINDS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found[first.value] = KINDS[node.func.id]
    return found


def sample_names() -> dict[str, str]:
    """Every name a PromQL expression may use -> the family it belongs to."""
    return {f"{name}{suffix}": name for name, kind in families().items() for suffix in SUFFIXES[kind]}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, function names) an expression uses: strings, label matchers, ranges and
    grouping clauses taken out first; a name followed by "(" is a function."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    if text.lstrip().startswith("label_values("):  # label_values(metric, label): the label is not a metric
        text = re.sub(r",\s*[A-Za-z_]\w*\s*\)\s*$", ")", text)
    functions = set(re.findall(r"([A-Za-z_:][\w:]*)\s*\(", text))
    names = set(re.findall(r"(?<![\w$.])([A-Za-z_:][\w:]*)\b(?!\s*\()", text)) - KEYWORDS
    return names, functions


def test_the_dashboard_is_grafana_json_of_a_recent_schema() -> None:
    dashboard = load()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["title"] and dashboard["uid"]
    ids = [p["id"] for p in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(dashboard["panels"]):
        pos = p["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, p["title"]


def test_every_panel_queries_the_data_source_variable() -> None:
    dashboard = load()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    queried = [p for p in panels(dashboard["panels"]) if p["type"] != "row"]
    assert len(queried) >= 10
    for p in queried:
        assert p["datasource"] == source, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == source and t["expr"].strip(), p["title"]
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            assert v["datasource"] == source, v["name"]


def test_metrics_py_is_read_whole() -> None:
    """The families the next tests check against (a parse that missed some would let them pass)."""
    assert {
        "digits_answers": "counter",
        "digits_predictions": "counter",
        "digits_errors": "counter",
        "digits_phase_seconds": "histogram",
        "digits_batch_size": "histogram",
        "digits_batches_published": "counter",
        "digits_jobs_published": "counter",
        "digits_open_sockets": "gauge",
        "digits_queue_depth": "gauge",
        "digits_workers": "gauge",
        "digits_worker_model": "gauge",
        "digits_worker_rss_bytes": "gauge",
        "digits_worker_busy_seconds": "counter",
        "digits_redis_up": "gauge",
    }.items() <= families().items()


def test_every_metric_family_appears_in_some_panel() -> None:
    known = sample_names()
    shown = {known[name] for expr in expressions(load()) for name in names_in(expr)[0] if name in known}
    missing = set(families()) - shown
    assert not missing, f"metric families no panel shows: {sorted(missing)}"


def test_every_expression_names_only_metrics_and_functions_that_exist() -> None:
    known = sample_names()
    exprs = expressions(load())
    assert exprs
    for expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        names, functions = names_in(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= set(known), f"{expr!r} names metrics that do not exist: {sorted(names - set(known))}"
        assert functions <= FUNCTIONS, f"{expr!r} calls unknown functions: {sorted(functions - FUNCTIONS)}"


def test_latency_quantiles_come_from_rates_of_buckets_kept_by_le() -> None:
    exprs = expressions(load())
    quantiles = [e for e in exprs if "histogram_quantile" in e]
    for expr in quantiles:
        assert re.search(r"rate\(\w+_bucket\b", expr), expr
        assert re.search(r"by \([^)]*\ble\b", expr), f"buckets summed without le: {expr}"
    phases = [e for e in quantiles if "digits_phase_seconds_bucket" in e]
    for q in ("0.5", "0.95", "0.99"):
        assert any(e.startswith(f"histogram_quantile({q},") for e in phases), f"no p{q} latency panel"


@pytest.mark.parametrize(
    ("expr", "names", "functions"),
    [
        ('sum by (code) (rate(digits_errors_total{code!="x"}[$__rate_interval]))', {"digits_errors_total"}, {"sum", "rate"}),
        ("label_values(digits_phase_seconds_bucket, phase)", {"digits_phase_seconds_bucket"}, {"label_values"}),
        ("a_total / on (x) group_left (y) b > bool 1", {"a_total", "b"}, set()),
    ],
)
def test_names_are_found_in_expressions(expr: str, names: set[str], functions: set[str]) -> None:
    assert names_in(expr) == (names, functions)
