#!/usr/bin/env python
"""Train and evaluate configs over several seeds; each task's headline figure as mean ± std.

    python tools/compare.py --configs configs/demo/mask_rcnn_dct_demo.yaml \\
        configs/demo/mask_rcnn_rgb_demo.yaml --seeds 3 --output output/compare
    python tools/compare.py --configs A.yaml B.yaml --seeds 2 --jobs 2 SOLVER.MAX_ITER 20
    python tools/compare.py --configs A.yaml B.yaml --seeds 3 MODEL.DEVICE cuda

Each config is trained with SEED 0, 1, ..., N-1 by tools/train_net.py, one process per
run, in ``<output>/<config stem>/seed<k>/`` (its log in ``log.txt``); the figures of its last
evaluation are read from the run's ``metrics.json`` and recorded in ``result.json``, written
last. Each task has one headline figure: box, mask and keypoint AP (COCOEvaluator), mIoU
(SemSegEvaluator) and PQ (COCOPanopticEvaluator), as the dataset's evaluator reports them. A run with a
``result.json`` is finished and reused by a later invocation with the same output folder
(after a check that its merged config, overrides included, is unchanged); an interrupted run
starts over, so that every result depends on its config and seed alone. Config overrides
(KEY VALUE pairs after the flags) go to every run. ``--jobs N`` runs N at once, each with
its share of the CPU threads (OMP_NUM_THREADS).

Writes to ``<output>``: ``comparison.md`` (the table printed at the end), ``comparison.json``
(every run's figures, the summary, the command, the date and the machine) and
``comparison.png`` (one point per run, the mean and ± one standard deviation marked).
The table's ± is the sample standard deviation over seeds (n - 1 in the denominator).
The JSON files are strict JSON: a metric COCO leaves undefined (NaN, e.g. APl when no
object is large) is null.
"""

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time

from freqdet.atomic_write import write_atomically
from freqdet.detection.config import load_config
from freqdet.machine import describe_machine

TRAIN_NET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_net.py")
TASKS = (
    ("bbox", "AP", "box AP"),
    ("segm", "AP", "mask AP"),
    ("keypoints", "AP", "keypoint AP"),
    ("sem_seg", "mIoU", "mIoU"),
    ("panoptic_seg", "PQ", "PQ"),
)
HEADLINES = {f"{task}/{metric}" for task, metric, _ in TASKS}


class Run:
    """One training run: a config with a seed, in its own folder."""

    def __init__(self, config: str, seed: int, output: str, opts):
        self.config, self.seed, self.opts = config, seed, list(opts)
        self.name = os.path.splitext(os.path.basename(config))[0]
        self.folder = os.path.join(output, self.name, f"seed{seed}")
        self.result_path = os.path.join(self.folder, "result.json")
        try:
            cfg = load_config(config, self.opts + ["SEED", str(seed)])
        except (KeyError, ValueError, AssertionError) as e:
            raise ValueError(f"{config} with overrides {self.opts}: {e}") from e
        self.device = cfg.MODEL.DEVICE
        del cfg["OUTPUT_DIR"]  # where a run lives does not change what it computes
        self.values = json.loads(json.dumps(flatten(cfg)))  # as a result.json gives them back

    def __str__(self):
        return f"{self.name} seed {self.seed}"

    def finished(self):
        """The recorded result, or None; ValueError when it was made from another config."""
        if not os.path.exists(self.result_path):
            return None
        with open(self.result_path) as f:
            result = json.load(f)
        recorded = result.get("config_values", {})
        changed = sorted(k for k in recorded.keys() | self.values.keys() if recorded.get(k) != self.values.get(k))
        if changed:
            differences = "; ".join(f"{k}: {recorded.get(k)!r} then, {self.values.get(k)!r} now" for k in changed[:5])
            raise ValueError(
                f"{self.result_path} records a run of {result.get('config')!r} whose merged config differs from "
                f"{self.config!r} with overrides {self.opts} now ({differences}): remove that run's folder to redo "
                "it, or pass another --output"
            )
        return result

    def train(self, threads: int) -> dict:
        """Train and evaluate from scratch; return and record the result."""
        shutil.rmtree(self.folder, ignore_errors=True)  # an interrupted run starts over
        os.makedirs(self.folder)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        command = [
            sys.executable,
            TRAIN_NET,
            "--config-file",
            self.config,
            *self.opts,
            "SEED",
            str(self.seed),
            "OUTPUT_DIR",
            self.folder,
        ]
        start = time.monotonic()
        with open(os.path.join(self.folder, "log.txt"), "w") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        if code != 0:
            raise RuntimeError(f"{self} failed (exit status {code}); see {os.path.join(self.folder, 'log.txt')}")
        result = {
            "config": self.config,
            "seed": self.seed,
            "overrides": self.opts,
            "config_values": self.values,
            "device": self.device,
            "threads": threads,
            "machine": describe_machine(),
            "seconds": round(time.monotonic() - start, 1),
            "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            **final_metrics(os.path.join(self.folder, "metrics.json")),
        }
        write_atomically(self.result_path, lambda f: f.write(strict_json(result)))
        return result


def flatten(node, prefix="") -> dict:
    """A config as {"MODEL.DCT.CHANNELS": 24, ...}."""
    values = {}
    for key, value in node.items():
        if isinstance(value, dict):
            values.update(flatten(value, f"{prefix}{key}."))
        else:
            values[f"{prefix}{key}"] = value
    return values


def finite(value):
    """``value`` with every NaN or infinite float in it, however nested, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def strict_json(value) -> bytes:
    """``value`` as JSON that any parser reads (no NaN): what the tool writes."""
    return json.dumps(finite(value), indent=1, allow_nan=False).encode()


def final_metrics(path: str) -> dict:
    """The last evaluation in a run's metrics.json, by task: {"bbox": {"AP": ..., ...}, "sem_seg": {...}}."""
    last = None
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if HEADLINES & record.keys():
                last = record
    if last is None:
        raise RuntimeError(
            f"{path} holds none of {sorted(HEADLINES)}: the run evaluated nothing (is DATASETS.TEST empty?)"
        )
    tasks = {task for task, _, _ in TASKS}
    metrics = {}
    for key, value in last.items():
        task, _, name = key.partition("/")
        if task in tasks:
            metrics.setdefault(task, {})[name] = value
    return metrics


def summarize(runs, results) -> list:
    """Per config, in the order given: its runs' headline figure by seed, their mean and std, per task."""
    rows = []
    names = {r.config: r.name for r in runs}
    for config, name in names.items():
        done = sorted((results[r] for r in runs if r.config == config and r in results), key=lambda x: x["seed"])
        row = {"config": config, "name": name, "seeds": [x["seed"] for x in done]}
        for task, metric, _ in TASKS:
            evaluated = [x for x in done if task in x and metric in x[task]]
            if evaluated:
                # Detectron2's evaluators give NaN (null once written) where the model predicted
                # nothing: nothing found, which is AP 0, and the seeds are listed.
                undefined = [x["seed"] for x in evaluated if not is_number(x[task][metric])]
                values = [x[task][metric] if is_number(x[task][metric]) else 0.0 for x in evaluated]
                row[task] = {
                    "metric": metric,
                    "seeds": [x["seed"] for x in evaluated],
                    "values": values,
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else None,
                    "no_predictions": undefined,
                }
        rows.append(row)
    return rows


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def present(rows) -> list:
    """The tasks (task, metric, label) that at least one row has, in TASKS' order."""
    return [t for t in TASKS if any(t[0] in row for row in rows)]


def mean_std(entry) -> str:
    if entry is None:
        return "-"
    return f"{entry['mean']:.1f}" + (f" ± {entry['std']:.1f}" if entry["std"] is not None else "")


def per_seed(entry) -> str:
    """Each seed's value; 0.0* where the model predicted nothing (see :func:`summarize`)."""
    if entry is None:
        return "-"
    marked = set(entry.get("no_predictions", ()))
    return ", ".join(f"{v:.1f}" + ("*" if s in marked else "") for s, v in zip(entry["seeds"], entry["values"]))


def table(rows) -> str:
    """A markdown table: mean ± std of each task's headline figure, then the per-seed values."""
    tasks = present(rows)
    labels = [label for _, _, label in tasks]
    lines = [
        "| config | seeds | " + " | ".join(labels + [f"{label} per seed" for label in labels]) + " |",
        "|---|---|" + "---:|" * len(tasks) + "---|" * len(tasks),
    ]
    for row in rows:
        seeds = ", ".join(map(str, row["seeds"])) or "-"
        cells = [mean_std(row.get(task)) for task, _, _ in tasks]
        cells += [per_seed(row.get(task)) for task, _, _ in tasks]
        lines.append(f"| `{row['config']}` | {seeds} | " + " | ".join(cells) + " |")
    if any(row.get(task, {}).get("no_predictions") for row in rows for task, _, _ in tasks):
        lines += ["", "\\* the model predicted nothing (Detectron2's evaluator reports NaN): counted as 0."]
    return "\n".join(lines)


def plot(rows, title: str):
    """One panel per task present (box AP, mask AP, keypoint AP, mIoU, PQ), one column per config:
    a point per run, the mean as a bar across the column and ± one standard deviation beside it."""
    from matplotlib.figure import Figure  # no pyplot: no global figures to leak over many reports

    tasks = [(task, label) for task, _, label in present(rows)]
    fig = Figure(figsize=(2.0 + 1.6 * len(rows) * len(tasks), 4.2))
    axes = fig.subplots(1, len(tasks), squeeze=False)
    for ax, (task, label) in zip(axes[0], tasks):
        labels = {"one run", "mean", "± std"}  # each named once, in the legend

        def once(name, labels=labels):
            if name not in labels:
                return None
            labels.remove(name)
            return name

        for x, row in enumerate(rows):
            entry = row.get(task)
            if entry is None:
                continue
            offsets = [(i - (len(entry["values"]) - 1) / 2) * 0.08 for i in range(len(entry["values"]))]
            ax.scatter(
                [x - 0.1 + o for o in offsets], entry["values"], s=22, color="tab:blue", zorder=3, label=once("one run")
            )
            ax.hlines(entry["mean"], x - 0.3, x + 0.1, color="black", lw=2, label=once("mean"))
            if entry["std"] is not None:
                ax.errorbar(
                    x + 0.2,
                    entry["mean"],
                    yerr=entry["std"],
                    fmt="none",
                    ecolor="tab:red",
                    capsize=4,
                    lw=1.5,
                    label=once("± std"),
                )
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([row["name"] for row in rows], rotation=20, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        if len(labels) < 3:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def write_report(output: str, runs, results, header: dict) -> str:
    """Write comparison.json, .md and .png for the runs finished so far; return the table."""
    rows = summarize(runs, results)
    text = table(rows)
    report = dict(header, runs=[results[r] for r in runs if r in results], summary=rows)
    write_atomically(os.path.join(output, "comparison.json"), lambda f: f.write(strict_json(report)))
    write_atomically(os.path.join(output, "comparison.md"), lambda f: f.write((text + "\n").encode()))
    title = f"{len(results)} runs, seeds {header['seeds']}" + (
        f", {' '.join(header['overrides'])}" if header["overrides"] else ""
    )
    fig = plot(rows, title)
    write_atomically(os.path.join(output, "comparison.png"), lambda f: fig.savefig(f, format="png", dpi=110))
    return text


def elapsed(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


def check_arguments(args) -> None:
    """Exit with one line where the configs, --seeds or --jobs cannot be run."""
    for config in args.configs:
        if not os.path.isfile(config):
            sys.exit(
                f"error: config file {config!r} not found (config overrides go after the last flag, "
                "e.g. --seeds 3 SOLVER.MAX_ITER 20)"
            )
    if args.seeds < 1 or args.jobs < 1:
        sys.exit(f"error: --seeds {args.seeds} and --jobs {args.jobs} must both be at least 1")
    names = [os.path.splitext(os.path.basename(c))[0] for c in args.configs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        sys.exit(f"error: configs share the file name {clashes}, which names their run folders: rename one")


def report_header(args, argv, seeds: list, threads: int) -> dict:
    """What the report records of the comparison: the command, when, where, and its settings."""
    return {
        "command": shlex.join(
            [
                os.path.relpath(sys.argv[0]) if argv is None else "tools/compare.py",
                *(sys.argv[1:] if argv is None else argv),
            ]
        ),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "seeds": seeds,
        "overrides": args.opts,
        "configs": args.configs,
        "jobs": args.jobs,
        "threads_per_run": threads,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", required=True, help="config files to compare")
    parser.add_argument("--seeds", type=int, default=3, help="runs per config, with SEED 0..N-1")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per run (default: cores / jobs)")
    parser.add_argument("--output", default="output/compare")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every run, KEY VALUE pairs")
    args = parser.parse_args(argv)

    check_arguments(args)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = args.threads or max(1, cores // args.jobs)
    seeds = list(range(args.seeds))
    try:
        runs = [Run(config, seed, args.output, args.opts) for seed in seeds for config in args.configs]
        results = {r: result for r in runs if (result := r.finished()) is not None}
    except ValueError as e:
        sys.exit(f"error: {e}")
    os.makedirs(args.output, exist_ok=True)
    header = report_header(args, argv, seeds, threads)
    todo = [r for r in runs if r not in results]
    print(
        f"{len(runs)} runs ({len(args.configs)} configs x seeds {seeds}) in {args.output}: {len(results)} finished "
        f"before, reused; {len(todo)} to run, {args.jobs} at a time with {threads} threads each",
        flush=True,
    )

    lock, start, failures = threading.Lock(), time.monotonic(), []

    def work(run):
        print(
            f"[{len(results)}/{len(runs)} done, {elapsed(time.monotonic() - start)}] starting {run} "
            f"(log: {os.path.join(run.folder, 'log.txt')})",
            flush=True,
        )
        try:
            result = run.train(threads)
        except (RuntimeError, OSError, ValueError) as e:
            with lock:
                failures.append(str(e))
            print(f"error: {e}", file=sys.stderr, flush=True)
            return
        with lock:
            results[run] = result
            write_report(args.output, runs, results, header)
            figures = ", ".join(
                f"{label} {result[task][metric]:.1f}" for task, metric, label in TASKS if metric in result.get(task, {})
            )
            print(
                f"[{len(results)}/{len(runs)} done, {elapsed(time.monotonic() - start)}] {run}: {figures} "
                f"(in {elapsed(result['seconds'])})",
                flush=True,
            )

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(work, todo))
    text = write_report(args.output, runs, results, header)
    print(f"\n{text}\n\nwrote {args.output}/comparison.md, comparison.json and comparison.png")
    if failures:
        print(f"error: {len(failures)} of {len(runs)} runs failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
