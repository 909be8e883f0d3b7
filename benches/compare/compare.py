#!/usr/bin/env python3
"""Side-by-side: `recurrent` (criterion medians) against PyTorch on the CPU (torch_rnn.py medians).

Reads criterion's estimates (`<target>/criterion/<group>/<cell>/<config>/<baseline>/estimates.json`,
median point estimate) for `train_step/...` and `forward/...`, runs `torch_rnn.py` (next to this
file, a byte-identical copy of the shared script) for the same configurations, and prints one
table per thread count: times, the ratio PyTorch / recurrent (> 1: recurrent is faster), the
issue's target, and effective GFLOP/s (torch_rnn.py's FLOP count). Nothing is copied at run time;
nothing here is needed by `cargo test`.

Usage (from the crate root):

  # run both sides, 1 and 2 threads (criterion baselines t1 / t2; 1 thread pinned with taskset)
  python3 benches/compare/compare.py --threads 1,2 --bench
  # only read existing criterion baselines, PyTorch figures from an earlier --torch-out file
  python3 benches/compare/compare.py --threads 1 --torch-json torch.jsonl
  # also the matrix-product ceilings (criterion ids gemm/own/*, gemm/ndarray/*, torch.mm)
  python3 benches/compare/compare.py --threads 1 --gemm

`--bench` runs `cargo bench --bench layers -- '<filter>' --save-baseline t<N>` with
RECURRENT_NUM_THREADS=N (the crate's thread count) and, for N = 1, `taskset -c <cpu>`; PyTorch
runs with `--threads N` under the same pinning.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(os.path.dirname(HERE))
CONFIGS = {"T": (1, 24, 1, 16), "S": (32, 50, 1, 32), "M": (64, 100, 8, 128), "L": (128, 100, 32, 512)}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# The issue's targets, as minimum ratios PyTorch time / recurrent time (None: report only).
TARGETS = {
    "train": {"T": 10.0, "S": 3.0, "M": 1.5, "L": 1.0},
    "infer": {"T": 10.0, "S": 2.0, "M": None, "L": None},
}
# PyTorch 2.15 figures on this machine quoted in the performance issue (1 thread, ms, median),
# against which the targets were set; printed next to the figures of the run at hand.
ISSUE_TORCH_MS = {
    ("lstm", "T"): (0.89, 0.091), ("lstm", "S"): (2.21, 0.389), ("lstm", "M"): (49.4, 7.81), ("lstm", "L"): (799.0, 202.0),
    ("gru", "T"): (2.66, 0.271), ("gru", "S"): (6.57, 1.01), ("gru", "M"): (49.3, 11.6), ("gru", "L"): (719.0, 231.0),
    ("rnn", "T"): (1.28, 0.120), ("rnn", "S"): (2.66, 0.346), ("rnn", "M"): (14.3, 3.56), ("rnn", "L"): (225.0, 68.0),
}
GEMM_SHAPES = {"hh_M": (64, 128, 512), "hh_L": (128, 512, 2048), "2048": (2048, 2048, 2048)}


def rnn_flops(cell, cfg, mode):
    b, t, i, h = CONFIGS[cfg]
    fwd = 2.0 * b * t * GATES[cell] * h * (i + h)
    return fwd if mode == "infer" else 3.0 * fwd


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(CRATE, "target")


def criterion_median_ms(bench_id, baseline):
    path = os.path.join(target_dir(), "criterion", *bench_id.split("/"), baseline, "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"] / 1e6
    except (OSError, KeyError, ValueError):
        return None


def pin(cpu, threads):
    if threads == 1 and cpu is not None and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def run_cargo_bench(filter_re, threads, cpu, extra):
    env = dict(os.environ, RECURRENT_NUM_THREADS=str(threads))
    cmd = pin(cpu, threads) + ["cargo", "bench", "--bench", "layers", "--", filter_re,
                               "--save-baseline", f"t{threads}"] + extra
    print("+", f"RECURRENT_NUM_THREADS={threads}", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, cwd=CRATE, env=env, check=True)


def run_torch(threads, cpu, cells, configs, modes, gemm, out):
    cmd = pin(cpu, threads) + [sys.executable, os.path.join(HERE, "torch_rnn.py"),
                               "--threads", str(threads), "--cells", ",".join(cells),
                               "--configs", ",".join(configs), "--modes", ",".join(modes),
                               "--no-native-lstm", "--out", out]
    if not gemm:
        cmd.append("--no-gemm")
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)


def load_torch(paths):
    """{(kind, key..., threads): ms} from torch_rnn.py JSON lines (median over repeated rounds)."""
    acc = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                r = json.loads(line)
                if r.get("variant") not in ("default", "mkl"):
                    continue
                if r["kind"] == "rnn":
                    key = ("rnn", r["cell"], r["config"], r["mode"], r["threads"])
                else:
                    key = ("gemm", r["shape"], r["threads"])
                acc.setdefault(key, []).append(r["ms"])
    return {k: statistics.median(v) for k, v in acc.items()}


def fmt_ms(ms):
    if ms is None:
        return "—"
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1", help="comma-separated thread counts (1,2)")
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--configs", default="T,S,M,L")
    ap.add_argument("--modes", default="train,infer")
    ap.add_argument("--bench", action="store_true", help="run cargo bench first (baselines t<N>)")
    ap.add_argument("--bench-args", default="", help="extra criterion arguments, e.g. '--measurement-time 3'")
    ap.add_argument("--baseline", default=None,
                    help="criterion baseline to read (default: t<N>, falling back to 'new')")
    ap.add_argument("--torch-json", action="append", default=[],
                    help="PyTorch results (torch_rnn.py --out files) to read instead of running it")
    ap.add_argument("--torch-out", default=None, help="where to keep the PyTorch results this run makes")
    ap.add_argument("--cpu", type=int, default=1, help="CPU for 1-thread runs (taskset), -1: no pinning")
    ap.add_argument("--gemm", action="store_true", help="also the matrix-product ceilings")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = ap.parse_args()

    threads_list = [int(t) for t in args.threads.split(",")]
    cells, configs, modes = args.cells.split(","), args.configs.split(","), args.modes.split(",")
    cpu = None if args.cpu < 0 else args.cpu
    extra = args.bench_args.split() if args.bench_args else []

    torch_files = list(args.torch_json)
    if not torch_files:
        out = args.torch_out or tempfile.mktemp(suffix=".jsonl", prefix="torch_rnn_")
        for n in threads_list:
            run_torch(n, cpu, cells, configs, modes, args.gemm, out)
        torch_files = [out]
        print(f"PyTorch results: {out}", file=sys.stderr)
    torch = load_torch(torch_files)

    groups = {"train": "train_step", "infer": "forward"}
    if args.bench:
        for n in threads_list:
            ids = "|".join(f"{groups[m]}/({'|'.join(cells)})/({'|'.join(configs)})" for m in modes)
            if args.gemm and n == threads_list[0]:
                ids += "|gemm/"
            run_cargo_bench(f"^({ids})$" if not args.gemm else ids, n, cpu, extra)

    sep = " | " if args.markdown else "  "
    for n in threads_list:
        baseline = args.baseline or f"t{n}"
        print(f"\n{n} thread{'s' if n > 1 else ''} (criterion baseline '{baseline}'; ratio = PyTorch / recurrent)")
        head = ["cell", "config", "mode", "PyTorch ms", "recurrent ms", "ratio", "target", "GFLOP/s", "ok",
                "issue's PyTorch ms", "ratio to it"]
        rows = []
        for cfg in configs:
            for cell in cells:
                for mode in modes:
                    bid = f"{groups[mode]}/{cell}/{cfg}"
                    ours = criterion_median_ms(bid, baseline)
                    if ours is None and args.baseline is None:
                        ours = criterion_median_ms(bid, "new")
                    theirs = torch.get(("rnn", cell, cfg, mode, n))
                    ratio = theirs / ours if ours and theirs else None
                    tgt = TARGETS[mode][cfg] if n == 1 else None
                    ok = "" if ratio is None or tgt is None else ("yes" if ratio >= tgt else "NO")
                    gf = rnn_flops(cell, cfg, mode) / (ours * 1e-3) / 1e9 if ours else None
                    quoted = ISSUE_TORCH_MS.get((cell, cfg), (None, None))[0 if mode == "train" else 1]
                    quoted = quoted if n == 1 else None
                    q_ratio = quoted / ours if ours and quoted else None
                    rows.append([cell, cfg, mode, fmt_ms(theirs), fmt_ms(ours),
                                 f"{ratio:.2f}x" if ratio else "—",
                                 f">= {tgt:g}x" if tgt else "report",
                                 f"{gf:.1f}" if gf else "—", ok,
                                 fmt_ms(quoted), f"{q_ratio:.2f}x" if q_ratio else "—"])
        print_table(head, rows, args.markdown)

    if args.gemm:
        n = threads_list[0]
        baseline = args.baseline or f"t{n}"
        print(f"\nMatrix products, {n} thread(s): GFLOP/s = 2·m·k·n / median time")
        head = ["shape [m,k]x[k,n]", "own kernel", "ndarray (matrixmultiply)", "torch.mm"]
        rows = []
        for name, (m, k, nn) in GEMM_SHAPES.items():
            fl = 2.0 * m * k * nn
            own = criterion_median_ms(f"gemm/own/{name}", baseline) or criterion_median_ms(f"gemm/own/{name}", "new")
            nd = criterion_median_ms(f"gemm/ndarray/{name}", baseline) or criterion_median_ms(f"gemm/ndarray/{name}", "new")
            tname = {"hh_M": "M:hh", "hh_L": "L:hh", "2048": "sq2048"}[name]
            tt = torch.get(("gemm", tname, n))
            g = lambda ms: f"{fl / (ms * 1e-3) / 1e9:.1f}" if ms else "—"
            rows.append([f"{name} [{m},{k}]x[{k},{nn}]", g(own), g(nd), g(tt)])
        print_table(head, rows, args.markdown)


def print_table(head, rows, markdown):
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join(" --- " for _ in head) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for r in [head] + rows:
        print("  ".join(str(x).rjust(w) for x, w in zip(r, widths)))


if __name__ == "__main__":
    main()
