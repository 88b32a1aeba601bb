"""Issue 7's benchmark: pgbench on pgbundle server vs PostgreSQL 15, one run, side by side.

    python bench/bench_pgbench.py [--seconds 15] [--clients 10] [--scale 10]
                                         [--only pgbundle,pooler,postgresql-15] [--modes simple,prepared]

For each target: ``pgbench -i -s SCALE``, then TPC-B (built-in tpcb-like) and ``-S``
(select-only) with ``-c CLIENTS -j 2`` for ``--seconds`` each, in simple and prepared mode.
Targets: PostgreSQL 15, pgbundle server, and ``pgbundle pooler`` (transaction mode, pool
size = clients) in front of the same pgbundle server.  Every server runs with fsync on,
synchronous_commit on and shared_buffers 128MB.  Prints tps and the ratio to PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from targets import close_all, pgbundle_server, pooler, postgres


def pgbench(port: int, args: list[str], timeout: float) -> str:
    r = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", *args, "postgres"],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed: {r.stdout}\n{r.stderr}")
    return r.stdout


def tps(out: str) -> float:
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if not m:
        raise RuntimeError(out)
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--only", default="postgresql-15,pgbundle,pooler")
    ap.add_argument("--modes", default="simple,prepared")
    ap.add_argument("--workloads", default="tpcb,select")
    ap.add_argument("--plot", type=Path, help="write a bar chart (PNG) and the figures (.json next to it)")
    args = ap.parse_args()
    only = args.only.split(",")
    modes = args.modes.split(",")
    workloads = args.workloads.split(",")
    root = Path(tempfile.mkdtemp(prefix="pgbundle-pgbench-"))
    os.chmod(root, 0o755)
    servers: list = []
    results: dict[str, dict[str, float]] = {}
    try:
        targets: list[tuple[str, int]] = []
        if "postgresql-15" in only:
            pg = postgres()
            servers.append(pg)
            targets.append(("postgresql-15", pg.port))
        if "pgbundle" in only or "pooler" in only:
            pgb = pgbundle_server()
            servers.append(pgb)
            if "pgbundle" in only:
                targets.append(("pgbundle", pgb.port))
            if "pooler" in only:
                pool = pooler(pgb.port, args.clients)
                servers.insert(0, pool)
                targets.append(("pooler", pool.port))
        initialised: set[int] = set()
        for label, port in targets:
            server_port = pgb.port if label == "pooler" else port
            t0 = time.monotonic()
            if server_port not in initialised:
                pgbench(server_port, ["-i", "-q", "-s", str(args.scale)], 3600)
                initialised.add(server_port)
            print(f"{label}: pgbench -i -s {args.scale} {time.monotonic() - t0:.1f}s", flush=True)
            results[label] = {}
            for wl in workloads:
                for mode in modes:
                    extra = ["-S"] if wl == "select" else []
                    out = pgbench(port, ["-n", "-c", str(args.clients), "-j", "2", "-T", str(args.seconds),
                                         "-M", mode, *extra], args.seconds + 300)
                    results[label][f"{wl}/{mode}"] = tps(out)
                    print(f"  {label} {wl}/{mode}: {tps(out):.0f} tps", flush=True)
        keys = [f"{wl}/{mode}" for wl in workloads for mode in modes]
        base = results.get("postgresql-15")
        print(f"\n{'workload':<16}" + "".join(f"{label:>16}" for label, _ in targets)
              + ("".join(f"{'ratio ' + label:>20}" for label, _ in targets if label != "postgresql-15")
                 if base else ""))
        for k in keys:
            line = f"{k:<16}" + "".join(f"{results[label][k]:>16.0f}" for label, _ in targets)
            if base:
                line += "".join(f"{results[label][k] / base[k]:>20.3f}" for label, _ in targets
                                if label != "postgresql-15")
            print(line)
        if args.plot:
            plot(results, [label for label, _ in targets], keys, args.plot,
                 f"pgbench -s {args.scale}, -c {args.clients} -j 2, {args.seconds} s per run")
    finally:
        close_all(servers)
        shutil.rmtree(root, ignore_errors=True)


def plot(results: dict[str, dict[str, float]], labels: list[str], keys: list[str], path: Path, title: str) -> None:
    """Grouped bars of tps per workload (log scale), each bar labelled with its ratio to PostgreSQL."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps({"title": title, "tps": results}, indent=2))
    fig, ax = plt.subplots(figsize=(11, 5.5), constrained_layout=True)
    width = 0.8 / len(labels)
    colors = {"postgresql-15": "#336791", "pgbundle": "#e8833a", "pooler": "#58a55c"}
    names = {"postgresql-15": "PostgreSQL 15", "pgbundle": "pgbundle server",
             "pooler": "pgbundle server through pgbundle pooler"}
    base = results.get("postgresql-15")
    for i, label in enumerate(labels):
        xs = [k + (i - (len(labels) - 1) / 2) * width for k in range(len(keys))]
        ys = [results[label][k] for k in keys]
        bars = ax.bar(xs, ys, width, label=names.get(label, label), color=colors.get(label))
        if base and label != "postgresql-15":
            for bar, k in zip(bars, keys):
                ax.annotate(f"{results[label][k] / base[k]:.2f}×",
                            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("transactions per second (log scale)")
    ax.set_xticks(range(len(keys)), [k.replace("select", "-S").replace("tpcb", "TPC-B") for k in keys])
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.savefig(path, dpi=110)
    print(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
