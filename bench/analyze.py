#!/usr/bin/env python3
"""Summaries for fedcomp's benchmark scripts (reads the coordinator's reports).

  analyze.py accuracy OUT_DIR      table of the accuracy benchmark runs
  analyze.py sweep OUT_DIR         sweep.csv with fitted growth against N

Only the standard library: it runs wherever the coordinator's CSVs are.
"""
import csv
import json
import math
import os
import statistics
import sys


def read_rounds(path):
    """Rows of a rounds.csv that committed (have a test accuracy)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    return [r for r in rows if r.get("test_acc", "") not in ("", "nan")]


def all_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def bytes_to_target(rows, target, acc0):
    """Uplink wire bytes until the test accuracy first reaches target,
    interpolated linearly within the round; None if never reached."""
    cum, prev_acc = 0.0, acc0
    for r in rows:
        up = float(r["up_wire_bytes"])
        acc = float(r["test_acc"])
        if acc >= target:
            if acc == prev_acc:
                return cum + up
            frac = (target - prev_acc) / (acc - prev_acc)
            return cum + max(0.0, min(1.0, frac)) * up
        cum += up
        prev_acc = acc
    return None


def mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt_mb(x):
    return "miss" if x is None else "%.2f MB" % (x / 1e6)


def accuracy(out_dir):
    # layout: OUT_DIR/<partition>/<config>/seed<k>/rounds.csv
    summary = []
    for part in sorted(os.listdir(out_dir)):
        pdir = os.path.join(out_dir, part)
        if not os.path.isdir(pdir):
            continue
        target = 0.85 if part == "iid" else 0.80
        for cfg in sorted(os.listdir(pdir)):
            cdir = os.path.join(pdir, cfg)
            if not os.path.isdir(cdir):
                continue
            finals, ups, downs, to_target, n_runs = [], [], [], [], 0
            for seed in sorted(os.listdir(cdir)):
                path = os.path.join(cdir, seed, "rounds.csv")
                if not os.path.exists(path):
                    continue
                rows = read_rounds(path)
                if not rows:
                    continue
                n_runs += 1
                allr = all_rows(path)
                finals.append(float(rows[-1]["test_acc"]))
                ups.append(sum(float(r["up_wire_bytes"]) for r in allr))
                downs.append(sum(float(r["down_wire_bytes"]) for r in allr))
                acc0 = 0.1
                init = os.path.join(cdir, seed, "initial_acc")
                if os.path.exists(init):
                    acc0 = float(open(init).read().strip() or 0.1)
                to_target.append(bytes_to_target(rows, target, acc0))
            if n_runs == 0:
                continue
            fm, fs = mean_sd(finals)
            um, _ = mean_sd(ups)
            dm, _ = mean_sd(downs)
            reached = [t for t in to_target if t is not None]
            tm, _ = mean_sd(reached)
            summary.append({
                "partition": part, "config": cfg, "runs": n_runs,
                "target": target, "final_acc_mean": fm, "final_acc_sd": fs,
                "up_bytes_mean": um, "down_bytes_mean": dm,
                "up_bytes_to_target_mean": tm,
                "reached": "%d/%d" % (len(reached), n_runs),
            })
    # ratios against the dense configuration of the same partition
    dense = {s["partition"]: s for s in summary if s["config"] == "dense"}
    print("%-10s %-14s %4s %16s %10s %10s %14s %8s %10s %9s" % (
        "partition", "config", "runs", "final acc (sd)", "vs dense",
        "up total", "up to target", "reached", "x fewer", "down"))
    for s in summary:
        d = dense.get(s["partition"])
        delta = (s["final_acc_mean"] - d["final_acc_mean"]) * 100 if d else float("nan")
        ratio = "-"
        if d and d["up_bytes_to_target_mean"] and s["up_bytes_to_target_mean"]:
            ratio = "%.1fx" % (d["up_bytes_to_target_mean"] / s["up_bytes_to_target_mean"])
        s["acc_delta_points"] = delta
        s["x_fewer_up_to_target"] = ratio
        print("%-10s %-14s %4d %9.2f%% (%.2f) %+9.2fpt %10s %14s %8s %10s %9s" % (
            s["partition"], s["config"], s["runs"], s["final_acc_mean"] * 100,
            s["final_acc_sd"] * 100, delta, fmt_mb(s["up_bytes_mean"]),
            fmt_mb(s["up_bytes_to_target_mean"]), s["reached"], ratio,
            fmt_mb(s["down_bytes_mean"])))
    with open(os.path.join(out_dir, "accuracy-summary.json"), "w") as f:
        for s in summary:
            f.write(json.dumps(s) + "\n")


def fit_linear(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0, float("nan")
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    a = my - b * mx
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return a, b, r2


def sweep(out_dir):
    """OUT_DIR/n<N>/rounds.csv -> OUT_DIR/sweep.csv + fits."""
    rows = []
    for name in os.listdir(out_dir):
        if not name.startswith("n") or not name[1:].isdigit():
            continue
        path = os.path.join(out_dir, name, "rounds.csv")
        if not os.path.exists(path):
            continue
        n = int(name[1:])
        rr = all_rows(path)
        ok = [r for r in rr if r.get("test_acc", "") not in ("", "nan")]
        if not ok:
            continue
        k = len(ok)
        avg = lambda key: sum(float(r[key]) for r in ok) / k
        rows.append({
            "devices": n,
            "rounds": k,
            "up_bytes_per_round": avg("up_wire_bytes"),
            "up_bytes_per_device": avg("up_wire_bytes") / n,
            "down_bytes_per_round": avg("down_wire_bytes"),
            "down_bytes_per_device": avg("down_wire_bytes") / n,
            "coord_cpu_s_per_round": avg("cpu_s"),
            "coord_cpu_ms_per_device": avg("cpu_s") * 1000 / n,
            "agg_s_per_round": avg("agg_s"),
            "round_wall_s": avg("wall_s"),
            "final_acc": float(ok[-1]["test_acc"]),
        })
    rows.sort(key=lambda r: r["devices"])
    if not rows:
        print("sweep: no runs found in %s" % out_dir, file=sys.stderr)
        return 1
    keys = list(rows[0].keys())
    with open(os.path.join(out_dir, "sweep.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    print(",".join(keys))
    for r in rows:
        print(",".join(("%g" % r[k]) if isinstance(r[k], float) else str(r[k]) for k in keys))
    xs = [r["devices"] for r in rows]
    fits = []
    print("\nfitted growth against N (y = a + b*N, and log-log slope p in y ~ N^p):")
    for key in keys[2:]:
        ys = [r[key] for r in rows]
        a, b, r2 = fit_linear(xs, ys)
        p, r2log = float("nan"), float("nan")
        if all(y > 0 for y in ys) and len(set(xs)) > 1:
            _, p, r2log = fit_linear([math.log(x) for x in xs], [math.log(y) for y in ys])
        fits.append({"metric": key, "a": a, "b": b, "r2": r2, "p": p, "r2_loglog": r2log})
        print("  %-24s a=%-12.4g b=%-12.4g R2=%-6.3f  p=%-6.3f R2(log)=%.3f" % (key, a, b, r2, p, r2log))
    with open(os.path.join(out_dir, "sweep-fit.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fits[0].keys()))
        w.writeheader()
        for x in fits:
            w.writerow(x)
    return 0


def main(argv):
    if len(argv) != 3 or argv[1] not in ("accuracy", "sweep"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "accuracy":
        accuracy(argv[2])
        return 0
    return sweep(argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
