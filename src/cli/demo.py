"""`make demo`: the whole pipeline on a small default sweep, then figures, table and the trend verdict.

Steps (the library functions the project's scripts call, called directly, no subprocess):
1. src.training.train.train_sweep (train_bulk_script.py): a 12-run sweep (l1 x adv x dropout) of a small arch;
2. per run, in parallel (--jobs worker processes):
   src.counting.driver.count_run (count_linear_regions.py: stable units + exact region count, backend auto,
   --time-limit per run), src.compress.run.compress_run (compress_network.py: exact stability, lossless
   compression, verified), src.transform.run.transform_run with the feasible patterns
   (transform_networks_using_all_nodes.py -i: built and verified; skipped when the count is incomplete,
   since a partial list is not the net's region set), and the all-2^N sizes (reported, not built);
3. every figure (src.report.figures.draw_all) and the results table (src.report.table.collect_results);
4. the verdict on the paper's trend, computed from the counts (src.report.trend.l1_trend).
A step whose outputs are newer than its inputs is skipped (re-running the demo resumes it);
an incomplete count is continued with resume. What each step prints goes to <out>/logs/, headed by
the equivalent command line.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import sys
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from src.compress.run import compress_run
from src.core.defaults import DEFAULT_MODELS_DIR, DEFAULT_TOL
from src.core.errors import ToolError
from src.counting.driver import count_run, final_line
from src.io.current import output_is_current
from src.io.files import atomic_write_json, file_sha256
from src.io.records import read_regions
from src.io.run_dir import (WEIGHTS, compressed_file_names, pattern_file_name, regions_file_name, run_path,
                            two_hidden_file_names, two_hidden_tag)
from src.report.figures import draw_all
from src.report.table import collect_results, missing_report
from src.training.train import train_sweep
from src.transform.run import transform_run

SCRIPTS = {         # the script each step stands for (the command line heading its log)
    "train": "train_bulk_script.py",
    "count": "count_linear_regions.py",
    "compress": "compress_network.py",
    "transform": "transform_networks_using_all_nodes.py",
}

DEFAULTS = {
    "models_dir": str(DEFAULT_MODELS_DIR),
    "out": "plots/out/demo",
    "start": 900,
    "arch": "mlp:6-6",
    "epochs": 4,
    "train_subset": 0,
    "lr": 0.01,
    "seed": 1,
    "l1": "0,1e-3,3e-3",
    "adv": "none,pgd",
    "dropout": "0,0.3",
    "adv_eps": 0.01,
    "adv_steps": 5,
    "adv_step_size": 0.005,
    "time_limit": 40.0,
    "jobs": 2,
    "verify_patterns": 200,
    "verify_points": 2000,
    "max_file_params": 2_000_000,
}

DOMAIN = "input_0_1"


@dataclass
class StepResult:
    step: str
    run: int | None
    status: str                 # ok | skipped | failed | not-run
    seconds: float = 0.0
    message: str = ""
    log: str = ""


@dataclass
class DemoState:
    results: list[StepResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, r: StepResult, echo) -> StepResult:
        with self.lock:
            self.results.append(r)
        run = f" run {r.run}" if r.run is not None else ""
        echo(f"[{r.step}]{run}: {r.status}" + (f" ({r.seconds:.1f}s)" if r.seconds else "")
             + (f" - {r.message}" if r.message else ""))
        return r


def _run_step(step: str, run: int | None, args: list, log_dir: Path, state: DemoState, echo, call,
              summary=None) -> StepResult:
    """Run one step: call() (a library function; returns the script's exit code) with what it prints
    going to <log_dir>/<step>_<run>.log, headed by the equivalent command line (the script of SCRIPTS
    with `args`). A ToolError is the script's `error: …` line and exit 2. One step at a time per process
    (sys.stdout / sys.stderr are redirected)."""
    script = SCRIPTS[step.split(":")[0]]
    log = log_dir / (f"{step.replace(':', '_')}" + (f"_{run}" if run is not None else "") + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(["python", script] + [str(a) for a in args]) + "\n\n")
        fh.flush()
        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            try:
                rc = call()
            except ToolError as e:
                print(f"error: {e}", file=sys.stderr)
                rc = 2
            except Exception:               # a bug: the traceback goes to the log, the step fails
                traceback.print_exc()
                rc = 1
    dt = time.monotonic() - t0
    text = log.read_text(errors="replace")
    if rc:
        tail = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["(no output)"]
        return state.add(StepResult(step, run, "failed", dt, f"exit {rc}: {tail[0][:200]}", str(log)), echo)
    msg = summary(text) if summary else ""
    return state.add(StepResult(step, run, "ok", dt, msg, str(log)), echo)


def _count(weights: Path, opts, resume: bool) -> int:
    """count_linear_regions.py -w WEIGHTS --backend B --time-limit T -q [--resume]."""

    summary = count_run(weights, backend=opts.backend, time_limit=opts.time_limit, resume=resume,
                            progress=False)
    print(final_line(summary, weights.parent))
    return 130 if summary.get("interrupted") else 0


def _compress(weights: Path, opts) -> int:
    """compress_network.py -w WEIGHTS --time-limit T -q."""

    report = compress_run(weights, time_limit=opts.time_limit, progress=False)
    if report.error:
        print(f"error: {report.error}", file=sys.stderr)
    return report.exit_code


def _transform(weights: Path, patterns=None, **options) -> int:
    """transform_networks_using_all_nodes.py -w WEIGHTS [-i PATTERNS] … -q."""

    report = transform_run(weights, patterns, progress=False, say=print, **options)
    if report.message:
        print(report.message, file=sys.stderr)
    return report.exit_code


def _train(opts) -> int:
    """train_bulk_script.py with train_args(opts)."""

    train_sweep(opts.start, opts.arch, opts.l1, opts.adv, opts.dropout, models_dir=opts.models_dir, force=opts.force,
                epochs=opts.epochs, seed=opts.seed, lr=opts.lr, train_subset=opts.train_subset, adv_eps=opts.adv_eps,
                adv_steps=opts.adv_steps, adv_step_size=opts.adv_step_size, quiet=True)
    return 0


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("$ ")]
    return lines[-1][:160] if lines else ""


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def analyse_run(run_id: int, opts, state: DemoState, echo) -> None:
    """count -> compress -> transform (feasible, all-2^N sizes) for one run directory."""
    d = run_path(opts.models_dir, run_id)
    w = d / WEIGHTS
    logs = Path(opts.out) / "logs"
    if not w.is_file():
        state.add(StepResult("count", run_id, "not-run", message=f"{w} missing (training failed?)"), echo)
        return
    regions = d / regions_file_name(DOMAIN)
    patfile = d / pattern_file_name(DOMAIN)
    # 1. stable units and regions
    reg = _read(regions)
    sha = file_sha256(w)                 # the steps below leave the weights as they are
    counted = output_is_current(regions, w, tol=DEFAULT_TOL, domain=DOMAIN, read=read_regions, weights_sha=sha)
    if not opts.force and counted and reg and reg.get("complete"):
        state.add(StepResult("count", run_id, "skipped", message=f"up to date: {reg.get('count')} regions"), echo)
    else:
        resume = not opts.force and counted and not reg.get("complete") and patfile.is_file()
        args = ["-w", w, "--backend", opts.backend, "--time-limit", opts.time_limit, "-q"] + (["--resume"] if resume
                                                                                              else [])
        _run_step("count", run_id, args, logs, state, echo, lambda: _count(w, opts, resume), _last_line)
    reg = _read(regions)
    # 2. compression (exact stability: the count's non-exact stable_units_<domain>.json is computed again and
    #    rewritten with the exact tiers; an exact one would be reused)
    comp = d / compressed_file_names(DOMAIN)[1]
    if not opts.force and output_is_current(comp, w, tol=DEFAULT_TOL, domain=DOMAIN, weights_sha=sha):
        state.add(StepResult("compress", run_id, "skipped", message="up to date"), echo)
    else:
        _run_step("compress", run_id, ["-w", w, "--time-limit", opts.time_limit, "-q"], logs, state, echo,
                  lambda: _compress(w, opts), lambda t: _compress_summary(comp))
    # 3a. two hidden layers from the feasible patterns (only for a complete count)
    tf = d / two_hidden_file_names(two_hidden_tag("feasible", DOMAIN))[1]
    if reg is None or not reg.get("complete"):
        why = "no region count" if reg is None else f"count incomplete ({reg.get('count')} patterns so far)"
        state.add(StepResult("transform:feasible", run_id, "not-run", message=why), echo)
    elif not opts.force and output_is_current(tf, w, domain=DOMAIN, inputs={"patterns_sha256": patfile},
                                                 weights_sha=sha):
        state.add(StepResult("transform:feasible", run_id, "skipped", message="up to date"), echo)
    else:
        _run_step("transform:feasible", run_id,
                  ["-w", w, "-i", patfile, "--verify-patterns", opts.verify_patterns,
                   "--verify-points", opts.verify_points, "--max-file-params", opts.max_file_params, "-q"],
                  logs, state, echo,
                  lambda: _transform(w, patfile, verify_patterns=opts.verify_patterns, verify_points=opts.verify_points,
                                     max_file_params=opts.max_file_params),
                  lambda t: _transform_summary(tf))
    # 3b. the all-2^N net: sizes only (it is never small enough to be worth building here)
    ta = d / two_hidden_file_names(two_hidden_tag("all", DOMAIN))[1]
    if not opts.force and output_is_current(ta, w, domain=DOMAIN, weights_sha=sha):
        state.add(StepResult("transform:all", run_id, "skipped", message="up to date"), echo)
    else:
        _run_step("transform:all", run_id, ["-w", w, "--max-units", 1, "-q"], logs, state, echo,
                  lambda: _transform(w, max_units=1), lambda t: "sizes reported (not built)")


def _compress_summary(path: Path) -> str:
    j = _read(path)
    if not j:
        return ""
    return (f"units {j.get('units_before')} -> {j.get('units_after')}, params {j.get('params_before')} -> "
            f"{j.get('params_after')}")


def _transform_summary(path: Path) -> str:
    j = _read(path)
    if not j:
        return ""
    sh = (j.get("sizes") or {}).get("shared") or {}
    ok = (j.get("verification") or {}).get("ok")
    return (f"{j.get('patterns')} patterns -> n = {sh.get('layer_sizes')}, verified: "
            f"{'yes' if ok else 'NO' if ok is False else '?'}")


def train_args(opts) -> list:
    """The training step as train_bulk_script.py flags (the command line heading its log; _train runs it)."""
    a = ["-s", opts.start, "-a", opts.arch, "--epochs", opts.epochs, "--l1", opts.l1, "--adv", opts.adv,
         "--dropout", opts.dropout, "--adv-eps", opts.adv_eps, "--adv-steps", opts.adv_steps,
         "--adv-step-size", opts.adv_step_size, "--lr", opts.lr, "--seed", opts.seed,
         "--train-subset", opts.train_subset, "--models-dir", opts.models_dir, "-q"]   # one run after the other
    if opts.force:
        a.append("--force")
    return a


def sweep_size(opts) -> int:
    n = 1
    for t in (opts.l1, opts.adv, opts.dropout):
        n *= len([x for x in str(t).split(",") if x.strip()])
    return n


def _analyse_in_worker(run_id: int, opts) -> list[StepResult]:
    """analyse_run in a worker process (--jobs > 1); its step results go back to run_demo."""
    local = DemoState()
    analyse_run(run_id, opts, local, lambda line: None)
    return local.results


def _analyse_all(ids, opts, state: DemoState, echo) -> None:
    """analyse_run for every run: here one after the other, or in --jobs worker processes (spawned, so
    that each has its own imports, solver output and interpreter lock, as the scripts had)."""
    if opts.jobs < 2 or len(ids) < 2:
        for r in ids:
            analyse_run(r, opts, state, echo)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(opts.jobs, len(ids)), mp_context=ctx) as pool:
        runs = {pool.submit(_analyse_in_worker, r, opts): r for r in ids}
        for f in as_completed(runs):
            try:
                results = f.result()
            except Exception as e:          # the worker died (killed, out of memory): its run failed
                results = [StepResult("count", runs[f], "failed", message=f"worker process died: {e!r}"[:200])]
            for r in results:
                state.add(r, echo)


def run_demo(opts, echo=print) -> dict:
    """The whole pipeline; returns a summary dict (also written to <out>/demo_summary.json)."""

    t_start = time.monotonic()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    state = DemoState()
    n = sweep_size(opts)
    ids = list(range(opts.start, opts.start + n))
    runs = f"{ids[0]}-{ids[-1]}"
    echo(f"demo: {n} runs of {opts.arch} (ids {runs}) in {opts.models_dir}; outputs in {out}")
    echo(f"      l1 {opts.l1} x adv {opts.adv} (eps {opts.adv_eps:g}) x dropout {opts.dropout}, {opts.epochs} epochs; "
         f"region counts with --backend {opts.backend}, --time-limit {opts.time_limit:g}s per run; {opts.jobs} jobs")

    # 1. training
    echo("== 1/4 training ==")
    tr = _run_step("train", None, train_args(opts), out / "logs", state, echo, lambda: _train(opts),
                   lambda t: f"{sum(1 for ln in t.splitlines() if ln.startswith('run '))} runs trained")
    if tr.status != "ok":
        echo(f"training did not finish ({tr.message}); continuing with the runs that exist")

    # 2. analysis per run
    echo("== 2/4 stable units, regions, compression, transformation ==")
    _analyse_all(ids, opts, state, echo)

    # 3. figures and table
    echo("== 3/4 figures and table ==")
    t0 = time.monotonic()
    figs = draw_all(opts.models_dir, runs, out, DOMAIN, slice_kw={"mode": opts.slice_plane}, log=echo)
    res = collect_results(opts.models_dir, runs, out, DOMAIN)
    state.add(StepResult("figures+table", None, "ok", time.monotonic() - t0), echo)

    # 4. verdict
    echo("== 4/4 the paper's trend ==")
    trend = res["trend"]
    total = time.monotonic() - t_start
    failures = [r for r in state.results if r.status == "failed"]
    not_run = [r for r in state.results if r.status == "not-run"]
    summary = {
        "models_dir": str(opts.models_dir), "runs": ids, "arch": opts.arch, "seconds": round(total, 1),
        "table": [str(res["csv"]), str(res["md"])],
        "figures": {k: ([str(p) for p in v] if isinstance(v, list) else f"not drawn: {v}") for k, v in figs.items()},
        "trend": {"shows": trend.shows, "fewer": trend.fewer, "more": trend.more, "equal": trend.equal,
                  "undetermined": trend.undetermined, "median_regions_by_l1": {f"{k:g}": v for k, v in
                                                                             trend.medians.items()},
                  "text": trend.summary()},
        "steps": [r.__dict__ for r in state.results],
        "missing_files": missing_report(res["records"]),
        "failures": len(failures),
    }
    atomic_write_json(out / "demo_summary.json", summary)

    echo("")
    echo(_regions_table(res["records"]))
    echo("")
    echo(trend.summary())
    incomplete = [r.run_id for r in res["records"] if r.regions is not None and not r.regions_complete]
    if incomplete:
        echo(f"(runs {', '.join(map(str, incomplete))}: counts hit the {opts.time_limit:g}s limit; they are lower "
             f"bounds, drawn hollow with arrows; rerun `make demo` to continue them with --resume)")
    echo("")
    echo(f"demo finished in {total / 60:.1f} min. Where everything is:")
    echo(f"  runs      {Path(opts.models_dir) / f'fcnn_run_{ids[0]}'} … fcnn_run_{ids[-1]}  "
         f"(config.json, metrics.json, weights.dat, regions_/stable_units_/compressed_/two_hidden_*.json)")
    echo(f"  table     {res['md']}  and  {res['csv']}")
    for k, v in figs.items():
        echo(f"  figure    {v[0] if isinstance(v, list) else 'not drawn: ' + v}")
    echo(f"  logs      {out / 'logs'}/  (one per step and run)")
    echo(f"  summary   {out / 'demo_summary.json'}")
    if not_run:
        echo("steps not run: " + "; ".join(f"{r.step} run {r.run}: {r.message}" for r in not_run))
    if failures:
        echo("FAILED steps: " + "; ".join(f"{r.step}" + (f" run {r.run}" if r.run is not None else "")
                                         + f": {r.message} (log {r.log})" for r in failures))
    return summary


def _regions_table(records) -> str:
    lines = [f"{'run':>5} {'l1':>7} {'adv':>5} {'drop':>5} {'test acc':>8} {'stable':>7} {'regions':>9}"]
    for r in records:
        sc = r.stable_counts()
        st = "" if not sc else str(sum(c["active"] + c["inactive"] for c in sc))
        cnt = "" if r.region_count is None else (f"{r.region_count}" + ("" if r.regions_complete else "+"))
        acc = "" if r.test_accuracy is None else f"{r.test_accuracy:.4f}"
        l1 = "" if r.l1 is None else f"{r.l1:g}"
        drop = "" if r.dropout is None else f"{r.dropout:g}"
        lines.append(f"{r.run_id:>5} {l1:>7} {r.adv or '':>5} {drop:>5} {acc:>8} {st:>7} {cnt:>9}")
    lines.append("(+ = incomplete count, a lower bound; stable = stably active + inactive hidden units)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    D = DEFAULTS
    p = argparse.ArgumentParser(
        description=("The whole pipeline on a small default (make demo): train a 12-run sweep, count stable units "
                     "and linear regions of every run, compress, transform to two hidden layers with the feasible "
                     "patterns (verified), draw every figure, write the results table, and say whether the "
                     "paper's trend (fewer regions with stronger l1) shows. Re-running resumes: finished steps "
                     "are skipped, incomplete counts continue."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("sweep")
    g.add_argument("--models-dir", default=D["models_dir"], help="where the run directories go")
    g.add_argument("-s", "--start", type=int, default=D["start"], help="first run id (100..111 is the paper's sweep)")
    g.add_argument("-a", "--arch", default=D["arch"], help="architecture (zoo name or mlp:W1-W2-...)")
    g.add_argument("--epochs", type=int, default=D["epochs"], help="training epochs")
    g.add_argument("--train-subset", type=int, default=D["train_subset"], help="first N training images (0 = all)")
    g.add_argument("--lr", type=float, default=D["lr"], help="SGD learning rate")
    g.add_argument("--seed", type=int, default=D["seed"], help="training seed")
    g.add_argument("--l1", default=D["l1"], help="l1 coefficients")
    g.add_argument("--adv", default=D["adv"], help="adversarial settings")
    g.add_argument("--dropout", default=D["dropout"], help="dropout values")
    g.add_argument("--adv-eps", type=float, default=D["adv_eps"],
                   help="PGD L_inf radius (small: larger radii collapse nets this small to a constant)")
    g.add_argument("--adv-steps", type=int, default=D["adv_steps"], help="PGD steps")
    g.add_argument("--adv-step-size", type=float, default=D["adv_step_size"], help="PGD step size")
    g = p.add_argument_group("analysis")
    g.add_argument("--backend", default="auto", help="region-counting backend (auto, gurobi, scip, lp)")
    g.add_argument("--time-limit", type=float, default=D["time_limit"],
                   help="seconds per run for the region count (and for the stability analysis of compression)")
    g.add_argument("--verify-patterns", type=int, default=D["verify_patterns"],
                   help="transformation: interior-point checks on a sample of this many patterns (0 = all)")
    g.add_argument("--verify-points", type=int, default=D["verify_points"],
                   help="transformation: uniform random points of [0,1]^784 to compare on (plus the 10000 MNIST "
                        "test images)")
    g.add_argument("--max-file-params", type=int, default=D["max_file_params"],
                   help="transformation: write the two-hidden-layer weights.dat only up to this many parameters "
                        "(the .json with sizes and verification is always written)")
    g.add_argument("--slice-plane", choices=("images", "around", "random"), default="images",
                   help="plane of the input-slice figure")
    g = p.add_argument_group("running")
    g.add_argument("--out", default=D["out"], help="figures, table, logs and demo_summary.json")
    g.add_argument("-j", "--jobs", type=int, default=D["jobs"], help="per-run analyses (count, compress, transform) run in parallel worker processes")
    g.add_argument("--force", action="store_true", help="redo every step (retrain, recount, ...)")
    return p


def main(argv=None) -> int:
    opts = build_parser().parse_args(argv)
    if opts.jobs < 1:
        raise ToolError("--jobs must be >= 1")
    if opts.time_limit <= 0:
        raise ToolError("--time-limit must be > 0")
    if opts.epochs < 1:
        raise ToolError("--epochs must be >= 1")
    summary = run_demo(opts)
    return 1 if summary["failures"] else 0
