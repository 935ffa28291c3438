"""``benchmark.json``, ``benchmark.md``, ``benchmark.png`` and ``per_user.json.gz`` from the per-run records.

The per-run records (``runs/``) are raw and large (every test user's values, the whole config);
``per_user.json.gz`` keeps only what the paired tests need, compressed, so that a results folder
can be kept (committed) without ``runs/`` and its p-values recomputed from it
(:func:`read_per_user` gives records :func:`paired_test` accepts).

Paired test: for each model against the first one, each test user's NDCG@10
is averaged over the seeds both models finished, and the two-sided Wilcoxon
signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped) runs over
users; a paired t-test over the same pairs is given too. Users, not
(user, seed) pairs, are the independent units: seeds re-train on the same users.
The same test runs within each bucket of the target's training frequency
(:mod:`ur4rec_recbole.run.metrics`), over that bucket's users. Beside it, a
seed-level paired t-test over the seeds both finished (each seed's mean test
NDCG@10; needs two seeds). Every run's ``protocol`` (split, ranking, history
masks: ``run/protocol.py``) is kept, and the report says whether all rows
were ranked under the same one.
"""

from __future__ import annotations

import gzip
import json
import math
from logging import getLogger
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

from ur4rec_recbole.errors import MissingExtra, require
from ur4rec_recbole.io import atomic_path, machine, write_bytes, write_json, write_text
from ur4rec_recbole.run.compare.spec import RunSpec
from ur4rec_recbole.run.metrics import BUCKET_METRICS, in_group
from ur4rec_recbole.run.protocol import EVALUATION_KEYS, same_evaluation

PAIRED_METRIC = "ndcg@10"
TEST_METRICS = tuple(f"{m}@{k}" for k in (10, 20) for m in ("recall", "ndcg", "mrr", "hit"))
COST_FIELDS = ("seconds_per_epoch", "total_seconds", "best_epoch")
PER_USER_FILE = "per_user.json.gz"
PER_RUN_FIELDS = ("ndcg@10", "recall@10")  # differ from run to run; the other per-user fields come from the split
TEST_NAME = "two-sided Wilcoxon signed-rank test over users (per-user test NDCG@10 averaged over common seeds)"


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def _per_user(record: dict, group: str | None = None) -> dict[int, float]:
    """Each test user's NDCG@10 in ``record``, of the users in bucket ``group`` (all users for None)."""
    per_user = record["per_user_test"]
    users, values = np.asarray(per_user["user_id"]), np.asarray(per_user[PAIRED_METRIC])
    if group is not None:
        mask = in_group(per_user, group)
        users, values = users[mask], values[mask]
    return dict(zip(users.tolist(), values.tolist()))


def paired_test(base: dict[int, dict], other: dict[int, dict], group: str | None = None) -> dict:
    """Relative change and p-values of ``other`` against ``base``: ``{seed: ok record}`` each.

    ``group`` restricts the test to the users of one bucket (the buckets come from the split, so both
    models put the same users in it).
    """
    seeds = sorted(set(base) & set(other))
    if not seeds:
        return {"seeds": [], "note": "no seed finished for both models"}
    users = None
    base_sum, other_sum = {}, {}
    for seed in seeds:
        b, o = _per_user(base[seed], group), _per_user(other[seed], group)
        if set(b) != set(o) or (users is not None and set(b) != users):
            raise ValueError(f"seed {seed}: the two models were tested on different users; "
                             "the split must be the same for a paired test")
        users = set(b)
        for u in users:
            base_sum[u] = base_sum.get(u, 0.0) + b[u]
            other_sum[u] = other_sum.get(u, 0.0) + o[u]
    order = sorted(users)
    if not order:
        return {"seeds": seeds, "n_users": 0, "note": "no test user in this bucket"}
    x = np.array([other_sum[u] for u in order]) / len(seeds)  # [U]
    y = np.array([base_sum[u] for u in order]) / len(seeds)  # [U]
    diff = x - y
    if np.all(diff == 0):
        wilcoxon_p, ttest_p = 1.0, 1.0  # identical rankings: no evidence of a difference
    else:
        wilcoxon_p = float(stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)
        ttest_p = float(stats.ttest_rel(x, y).pvalue)
    base_mean = float(y.mean())
    seed_means = np.array([[np.mean(list(_per_user(r[seed], group).values())) for seed in seeds]
                           for r in (other, base)])  # [2, S]
    seed_p = float(stats.ttest_rel(*seed_means).pvalue) if len(seeds) > 1 and np.any(np.diff(seed_means, axis=0)) \
        else None
    return {
        "seeds": seeds,
        "n_users": len(order),
        "mean": float(x.mean()),
        "baseline_mean": base_mean,
        "relative_change": (float(x.mean()) - base_mean) / base_mean if base_mean else None,
        "wilcoxon_p": wilcoxon_p,
        "ttest_p": None if math.isnan(ttest_p) else ttest_p,
        "seed_ttest_p": None if seed_p is None or math.isnan(seed_p) else seed_p,
    }


def _run_entry(record: dict) -> dict:
    """What benchmark.json keeps of one run (per-user values stay in runs/)."""
    if record["status"] != "ok":
        return {k: record[k] for k in ("seed", "status", "error")}
    keep = ("seed", "status", "protocol", "best_valid_result", "test_result", "test_buckets", "train_seconds",
            "epochs_run", *COST_FIELDS, "epoch_history", "machine", "config")
    return {k: record.get(k) for k in keep}


def bucket_summary(ok: dict[int, dict], baseline: dict[int, dict] | None, base_label: str) -> dict:
    """Per bucket of the target's training frequency: users, mean ± std over seeds, paired test vs the first model."""
    reports = [r["test_buckets"] for r in ok.values() if r.get("test_buckets")]
    if not reports or len(reports) != len(ok):  # no run finished, or runs written before the bucket report
        return {}
    summary = {}
    for group, first in reports[0].items():
        entry = {"users": first["users"]}
        for metric in BUCKET_METRICS:
            mean, std = _mean_std([r[group][metric] for r in reports])
            entry[f"test {metric}"] = {"mean": mean, "std": std}
        with_users = all("per_user_test" in r for r in ok.values())
        entry[f"vs {base_label}"] = (paired_test(baseline, ok, group)
                                     if baseline is not None and with_users and first["users"] else None)
        summary[group] = entry
    return summary


def summarize(specs: Sequence[RunSpec], seeds: Sequence[int], dataset: str, records: Sequence[dict]) -> dict:
    """Everything benchmark.json holds: per-seed numbers, means and stds, paired tests."""
    by_label: dict[str, dict[int, dict]] = {s.label: {} for s in specs}
    for record in records:
        by_label[record["label"]][record["seed"]] = record
    valid_metric = next((r["config"]["valid_metric"].lower() for r in records if r["status"] == "ok"), None)
    baseline = {seed: r for seed, r in by_label[specs[0].label].items() if r["status"] == "ok"}
    models = []
    for i, spec in enumerate(specs):
        runs = [by_label[spec.label][seed] for seed in seeds]
        ok = {r["seed"]: r for r in runs if r["status"] == "ok"}
        summary: dict = {}
        if ok:
            summary[f"valid {valid_metric}"] = _mean_std([r["best_valid_result"].get(valid_metric) for r in ok.values()])
            for metric in TEST_METRICS:
                if all(metric in r["test_result"] for r in ok.values()):
                    summary[f"test {metric}"] = _mean_std([r["test_result"][metric] for r in ok.values()])
            for name in COST_FIELDS:
                summary[name] = _mean_std([r[name] for r in ok.values()])
        models.append({
            "label": spec.label,
            "model": spec.model,
            "overrides": dict(spec.overrides),
            "n_ok": len(ok),
            "n_failed": len(runs) - len(ok),
            "summary": {k: {"mean": m, "std": s} for k, (m, s) in summary.items()},
            f"vs {specs[0].label}": None if i == 0 or not ok or not baseline else paired_test(baseline, ok),
            "buckets": bucket_summary(ok, None if i == 0 or not baseline else baseline, specs[0].label),
            "runs": [_run_entry(r) for r in runs],
        })
    ok_records = [r for r in records if r["status"] == "ok"]
    return {
        "dataset": dataset,
        "seeds": list(seeds),
        "protocol": next((r.get("protocol") for r in ok_records), None),
        "same_protocol": same_evaluation(ok_records),
        "valid_metric": valid_metric,
        "baseline": specs[0].label,
        "paired_test": TEST_NAME,
        "machine": machine(),
        "models": models,
    }


_PRETTY = {"recall": "Recall", "ndcg": "NDCG", "mrr": "MRR", "hit": "Hit", "precision": "Precision"}


def pretty(metric: str) -> str:
    """``ndcg@10`` -> ``NDCG@10``, as RecBole writes metric names in configs."""
    name, _, k = metric.partition("@")
    return f"{_PRETTY.get(name, name)}@{k}" if k else _PRETTY.get(name, name)


def _cell(stat: dict | None, digits: int = 4) -> str:
    if stat is None or stat["mean"] is None:
        return "–"
    text = f"{stat['mean']:.{digits}f}"
    return text if stat["std"] is None else f"{text} ± {stat['std']:.{digits}f}"


def markdown(bench: dict) -> str:
    """benchmark.md: one row per model, failures and the paired test spelled out."""
    valid = pretty(bench["valid_metric"] or "valid metric")
    metrics = [m for m in TEST_METRICS if any(f"test {m}" in e["summary"] for e in bench["models"])]
    base = bench["baseline"]
    header = ["model", "runs ok", f"valid {valid}", *(f"test {pretty(m)}" for m in metrics),
              "train s/epoch", "total s", "best epoch", f"Δ test {pretty(PAIRED_METRIC)} vs `{base}`", "p (Wilcoxon)", "p (t)",
              "p (seeds, t)"]
    lines = [
        f"# Benchmark on {bench['dataset']}, seeds {', '.join(map(str, bench['seeds']))}",
        "",
        "Every run: the same split and full-ranking evaluator (RecBole's, from one Config chain); "
        f"the checkpoint with the best validation {valid} is the one tested. Mean ± sample std over seeds.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    failures = []
    for entry in bench["models"]:
        s = entry["summary"]
        vs = entry.get(f"vs {base}")
        change = p_w = p_t = p_s = "–"
        if vs and vs.get("relative_change") is not None:
            change = f"{100 * vs['relative_change']:+.1f}%"
            p_w = f"{vs['wilcoxon_p']:.3g}"
            p_t = "–" if vs["ttest_p"] is None else f"{vs['ttest_p']:.3g}"
            p_s = "–" if vs.get("seed_ttest_p") is None else f"{vs['seed_ttest_p']:.3g}"
        cells = [f"`{entry['label']}`", f"{entry['n_ok']}/{entry['n_ok'] + entry['n_failed']}"]
        if entry["n_ok"]:
            cells += [_cell(s.get(f"valid {bench['valid_metric']}")), *(_cell(s.get(f"test {m}")) for m in metrics),
                      _cell(s["seconds_per_epoch"], 1), _cell(s["total_seconds"], 0), _cell(s["best_epoch"], 1)]
        else:
            none = "not run" if all(r["status"] == "not run" for r in entry["runs"]) else "failed"
            cells += [none] * (len(metrics) + 4)
        lines.append("| " + " | ".join(cells + [change, p_w, p_t, p_s]) + " |")
        failures += [f"- `{entry['label']}` seed {r['seed']}: {r['error']}" for r in entry["runs"] if r["status"] != "ok"]
    if failures:
        lines += ["", "Runs not in the table (a failed run's traceback is in `runs/`; \"not run\": the table was "
                  "written from finished runs only):", *failures]
    where = bench["machine"]
    lines += [
        "",
        f"Paired test against `{base}`: {bench['paired_test']}; then the paired t-test over the same "
        "pairs, and a paired t-test over seeds (each seed's mean; two seeds or more). Δ is the relative change "
        "of the mean test NDCG@10 over the seeds both finished.",
        "",
        protocol_line(bench),
        *bucket_markdown(bench),
        "",
        f"Machine: {where['processor']}, {where['cpu_count']} cores, {where['torch_threads']} torch threads, "
        f"GPU: {where['cuda'] or 'none'}, torch {where['torch']}.",
    ]
    return "\n".join(lines) + "\n"


def protocol_line(bench: dict) -> str:
    """One line: the protocol every row was ranked under, or a warning that the rows differ."""
    protocol = bench.get("protocol")
    if protocol is None:
        return "Protocol: not recorded (runs made before run/protocol.py)."
    shown = ", ".join(f"{key} {protocol.get(key)}" for key in EVALUATION_KEYS)
    if not bench.get("same_protocol", True):
        return f"**Protocol: the rows were NOT ranked under one protocol** (first: {shown}); see each run's JSON."
    return f"Protocol (every row, from each run's JSON): {shown}."


def bucket_markdown(bench: dict) -> list[str]:
    """Lines of the bucket table (empty when no run has a bucket report)."""
    base = bench["baseline"]
    rows = []
    for entry in bench["models"]:
        for group, b in entry.get("buckets", {}).items():
            vs = b.get(f"vs {base}") or {}
            change = "–" if vs.get("relative_change") is None else f"{100 * vs['relative_change']:+.1f}%"
            p_w = "–" if vs.get("wilcoxon_p") is None else f"{vs['wilcoxon_p']:.3g}"
            rows.append(f"| `{entry['label']}` | {group} | {b['users']} | {_cell(b['test ndcg@10'])} | "
                        f"{_cell(b['test recall@10'])} | {change} | {p_w} |")
    if not rows:
        return []
    return [
        "",
        "## By the target item's training frequency",
        "",
        "Test users grouped by how often their target item occurs in the training split (0, 1–4, 5–19, ≥ 20; "
        "`cold`: targets removed from training by `cold_items`, a part of bucket 0). Mean ± std over seeds; "
        f"Δ and p: the paired test above, over the bucket's users, against `{base}`.",
        "",
        "| model | bucket | users | test NDCG@10 | test Recall@10 | "
        f"Δ test NDCG@10 vs `{base}` | p (Wilcoxon) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def plot(bench: dict, path: Path) -> None:
    """Test NDCG@10 per model with error bars, and validation learning curves (skipped without matplotlib)."""
    try:
        matplotlib = require("matplotlib", "plots", path.name)
    except MissingExtra as err:
        getLogger().warning(f"{err}; {path} not written")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    valid = bench["valid_metric"] or PAIRED_METRIC
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels, means, stds = [], [], []
    for i, entry in enumerate(bench["models"]):
        stat = entry["summary"].get(f"test {PAIRED_METRIC}")
        labels.append(entry["label"])
        means.append(stat["mean"] if stat else 0.0)
        stds.append((stat["std"] or 0.0) if stat else 0.0)
        color = f"C{i}"
        histories = [r["epoch_history"] for r in entry["runs"] if r["status"] == "ok"]
        for history in histories:
            xs = [e["epoch"] for e in history if "valid" in e]
            curves.plot(xs, [e["valid"][valid] for e in history if "valid" in e], color=color, alpha=0.25, lw=1)
        n_epochs = max((len(h) for h in histories), default=0)
        mean_curve = [np.mean([h[k]["valid"][valid] for h in histories if len(h) > k and "valid" in h[k]])
                      for k in range(n_epochs)]
        if mean_curve:
            curves.plot(range(n_epochs), mean_curve, color=color, marker="o", ms=3, label=entry["label"])
    colors = [f"C{i}" for i in range(len(labels))]
    drawn = bars.bar(range(len(labels)), means, yerr=stds, capsize=4, color=colors)
    bars.bar_label(drawn, fmt="%.4f", label_type="center", color="white", fontsize=8)
    bars.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    bars.set_ylabel(f"test {pretty(PAIRED_METRIC)} (mean ± std over seeds)")
    bars.set_title("Test")
    curves.set_xlabel("epoch")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set_ylabel(f"validation {pretty(valid)}")
    curves.set_title("Learning curves (thin: one seed; bold: mean)")
    if curves.lines:
        curves.legend(fontsize=8)
    fig.suptitle(f"{bench['dataset']}, seeds {', '.join(map(str, bench['seeds']))}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def per_user_arrays(records: Sequence[dict]) -> dict:
    """What the paired tests need of the finished runs: the split's per-user fields once, each run's values.

    ``{"users": {field: [...]}, "runs": {label: {seed: {"ndcg@10": [...], "recall@10": [...]}}}}``; a run
    whose users or buckets differ from the first run's (never, for one split) keeps its own ``users``.
    """
    shared, runs = None, {}
    for record in records:
        if record.get("status") != "ok" or "per_user_test" not in record:
            continue
        per_user = record["per_user_test"]
        fields = {k: v for k, v in per_user.items() if k not in PER_RUN_FIELDS}
        entry = {k: per_user[k] for k in PER_RUN_FIELDS if k in per_user}
        if shared is None:
            shared = fields
        elif fields != shared:
            entry["users"] = fields
        runs.setdefault(record["label"], {})[str(record["seed"])] = entry
    return {"users": shared or {}, "runs": runs}


def write_per_user(path: Path, records: Sequence[dict]) -> None:
    """``per_user_arrays`` as gzip-compressed JSON (byte-identical for identical runs: no timestamp)."""
    data = json.dumps(per_user_arrays(records), separators=(",", ":")).encode("utf-8")
    write_bytes(path, gzip.compress(data, compresslevel=9, mtime=0))


def read_per_user(path: Path) -> dict[str, dict[int, dict]]:
    """``{label: {seed: {"per_user_test": {...}}}}`` from a ``per_user.json.gz``, as :func:`paired_test` reads."""
    stored = json.loads(gzip.decompress(Path(path).read_bytes()))
    return {label: {int(seed): {"per_user_test": {**stored["users"], **entry.pop("users", {}), **entry}}
                    for seed, entry in by_seed.items()}
            for label, by_seed in stored["runs"].items()}


def write_report(output: Path, specs: Sequence[RunSpec], seeds: Sequence[int], dataset: str,
                 records: Sequence[dict]) -> dict:
    """Write benchmark.json, benchmark.md, benchmark.png and per_user.json.gz into ``output``; return the json."""
    bench = summarize(specs, seeds, dataset, records)
    write_json(output / "benchmark.json", bench)
    write_per_user(output / PER_USER_FILE, records)
    write_text(output / "benchmark.md", markdown(bench))
    plot(bench, output / "benchmark.png")
    return bench

