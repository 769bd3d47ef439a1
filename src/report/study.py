"""The study of issue 21 in one call: train the sweep, measure every run, test each factor, draw and report.

`run_study(settings)` (the script `run_study.py`) runs these phases in order; each is a plain library call per
run, and each skips what is current (src/io/current.py: an output made from the very weights, tol and domain),
so a study that was killed, or stopped by a phase's time limit, continues where it stopped when run again:

1. **train** — `src.training.train.train_sweep` over l1 x adv x dropout for every seed (run ids `start ..`,
   seed-major), on Ray with `workers` > 1. Complete runs are skipped, a killed run resumes from its last epoch.
2. **segments** — `src.sections.files.write_image_sections`: the exact 1-D sections along M seeded segments
   between test images (`segments.json`): regions crossed per unit of L2 length, paired by segment.
3. **global** — `src.counting.driver.count_run` on [0,1]^n0 with a time limit: the stable units
   (`stable_units_input_0_1.json`, the paper's mechanism), certified bounds, the exact count where it finishes;
   then `src.counting.estimate.estimate_run` (`--estimate N`) where the count is incomplete. A count killed
   mid-way resumes from its checkpoint.
4. **pilot** — the box widths, when not given: exact local counts around the first P test images of a few
   working runs (seed 0, adv none and dropout 0 at the smallest and largest l1, and PGD at the smallest l1) at
   growing candidate widths; the first width whose median pilot box holds at least `handful` regions and the
   next one are chosen (docs/paper.md). Its boxes are those of the next phase, so none is counted twice.
5. **local** — exact counts of the boxes of both widths around test images 0..K-1 of every run
   (`src.counting.local_sweep.count_sweep`, one box at a time into `<run>/study_boxes/`, each with its own time
   limit), image-major so that a phase cut by its time limit leaves every run with the same images; then the
   run's sweep table `regions_sweep_test0_to_test<K-1>_width_<w1>_<w2>.json` (boxes not reached listed as such).
6. **report** — the results table and the verdict (`src.report.table.collect_results`: paired Wilcoxon tests
   per factor, median ratios with bootstrap intervals, seeds; broken runs named and left out), the figures
   (`src.report.figures`), the per-setting table with bootstrap intervals, and `<out>/report.md`.

`<out>/study.json` keeps the settings, the chosen widths, and the seconds each phase took (summed over the
invocations that did work), so that the report states what the recipe cost here.
"""
from __future__ import annotations

import io
import math
import time
import traceback
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from src.core.box import Box
from src.core.defaults import DEFAULT_DOMAIN, DEFAULT_MODELS_DIR, DEFAULT_TOL
from src.core.errors import ToolError
from src.core.progress import progress_bar
from src.counting.driver import count_run
from src.counting.estimate import estimate_run
from src.counting.local_sweep import count_sweep, sweep_stem, write_count_sweep
from src.io.current import output_is_current
from src.io.domains import DomainSpec, domains_for
from src.io.files import atomic_write_json, atomic_write_text, file_sha256, read_json
from src.io.readers import load_net
from src.io.records import read_regions
from src.io.run_dir import SEGMENTS, WEIGHTS, checkpoint_file_name, regions_file_name, run_path
from src.parallel import Session
from src.report.stats import bootstrap_median_ci
from src.report.table import NEAR_CHANCE_ACCURACY, collect_results, load_runs
from src.report.trend import ALPHA, fmt_l1, fmt_p
from src.sections.files import write_image_sections
from src.training.train import is_complete, train_sweep

PHASES = ("train", "segments", "global", "pilot", "local", "report")

BOX_DIR = "study_boxes"             # per-box sweep tables of a run (the local phase's checkpoints)

STATE = "study.json"

REPORT = "report.md"

N_BOOT = 2000                       # bootstrap resamples of the per-setting medians in the report's table


# ---- recipes ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """Everything a study does; the named recipes below are starting points, each field can be overridden."""

    name: str
    arch: str = "fcnn4b"
    epochs: int = 120
    l1: str = "0,2e-4,1e-3"
    adv: str = "none,pgd"
    dropout: str = "0,0.3"
    seeds: tuple = (0,)
    train_subset: int = 0
    training_recipe: str = "seed"   # train_sweep(recipe=): "seed" or "authors"
    adv_eps: float | None = None    # None: the training recipe's attack
    adv_steps: int | None = None
    adv_step_size: float | None = None
    images: int = 100               # K: local boxes around test images 0..K-1 per width
    segments: int = 100             # M: seeded segments between test images
    segments_seed: int = 0
    widths: tuple | None = None     # the two box widths; None: chosen by the pilot
    width_candidates: tuple = (0.0005, 0.001, 0.002, 0.005, 0.01)
    pilot_images: int = 3           # P
    handful: int = 10               # regions the median pilot box must hold at the first chosen width
    box_time_limit: float = 300.0   # one local box
    box_data_samples: int = 10000   # seeded samples per local box (data-first stability)
    pilot_time_limit: float | None = 1800.0
    local_time_limit: float | None = None      # the local phase (all boxes)
    global_time_limit: float = 120.0           # the global count of one run
    global_data_samples: int = 100000
    estimate: int = 30              # probes of --estimate where the global count is incomplete (0: none)
    estimate_time_limit: float = 600.0
    tol: float = DEFAULT_TOL
    min_accuracy: float = NEAR_CHANCE_ACCURACY

    def settings(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


RECIPES = {
    # the seed's recipe: 120 epochs, the 12-run sweep, K = 100 images, M = 100 segments, estimates
    "full": Recipe("full"),
    # about 20 minutes per seed on 2 idle cores, 1 h 39 min for one seed on a loaded one (docs/paper.md):
    # 20 epochs, K = 30, no estimate
    "medium": Recipe("medium", epochs=20, images=30, segments=100, box_time_limit=60.0, pilot_time_limit=600.0,
                     local_time_limit=1500.0, global_time_limit=30.0, estimate=0,
                     width_candidates=(0.0005, 0.001, 0.002, 0.005)),
    # a minute: the end-to-end test's recipe (a tiny net, 2 epochs on 10,000 images, the demo's weak attack)
    "tiny": Recipe("tiny", arch="mlp:6-6", epochs=2, l1="0,3e-3", dropout="0,0.3", seeds=(1,), train_subset=10000,
                   adv_eps=0.01, adv_steps=3, adv_step_size=0.005, images=3, segments=3,
                   width_candidates=(0.005, 0.01, 0.02, 0.05), pilot_images=2, handful=3, box_time_limit=30.0,
                   box_data_samples=500, pilot_time_limit=120.0, local_time_limit=300.0, global_time_limit=20.0,
                   global_data_samples=1000, estimate=0),
}


def recipe_from(name: str, **overrides) -> Recipe:
    """The named recipe with the given fields replaced (None values are ignored)."""
    if name not in RECIPES:
        raise ToolError(f"--recipe {name!r}: choose one of {', '.join(RECIPES)}")
    r = replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})
    check_recipe(r)
    return r


def check_recipe(r: Recipe) -> None:
    def need(ok, msg):
        if not ok:
            raise ToolError(msg)
    need(r.images >= 1, f"--images must be >= 1, got {r.images}")
    need(r.segments >= 1, f"--segments must be >= 1, got {r.segments}")
    need(len(r.seeds) >= 1 and len(set(r.seeds)) == len(r.seeds), f"--seeds: give distinct seeds, got {r.seeds}")
    need(r.widths is None or (len(r.widths) == 2 and all(w > 0 for w in r.widths) and r.widths[0] < r.widths[1]),
         f"--widths: give two widths L1 < L2 (or auto), got {r.widths}")
    need(len(r.width_candidates) >= 2 and list(r.width_candidates) == sorted(set(r.width_candidates))
         and r.width_candidates[0] > 0, f"width candidates must grow and be > 0, got {r.width_candidates}")
    need(1 <= r.pilot_images <= r.images, f"--pilot-images must be in 1..--images, got {r.pilot_images}")
    need(r.handful >= 1, f"--handful must be >= 1, got {r.handful}")
    need(r.estimate >= 0, f"--estimate must be >= 0 probes, got {r.estimate}")
    for k in ("box_time_limit", "global_time_limit", "estimate_time_limit", "pilot_time_limit", "local_time_limit"):
        v = getattr(r, k)
        need(v is None or (math.isfinite(v) and v > 0), f"--{k.replace('_', '-')} must be > 0 seconds, got {v}")
    need(r.training_recipe in ("seed", "authors"), f"--training-recipe: seed or authors, got {r.training_recipe!r}")


def _list(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def sweep_settings(r: Recipe) -> list[tuple]:
    """[(seed, l1, adv, dropout)] in run-id order: seed outermost, then l1, adv, dropout (train_sweep's order)."""
    return [(s, float(l1), adv.lower(), float(p)) for s in r.seeds for l1 in _list(r.l1) for adv in _list(r.adv)
            for p in _list(r.dropout)]


# ---- small helpers ------------------------------------------------------------------------------------------
def _now() -> float:
    return time.time()


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - _now()


def _deadline(limit: float | None) -> float | None:
    return None if limit is None else _now() + limit


def _read(path: Path):
    try:
        return read_json(path)
    except ToolError:
        return None


# ---- the measuring steps of one run (module-level: they also run as Ray tasks) ------------------------------
def segments_step(run_dir: str, r: Recipe) -> dict:
    """segments.json of the run: M seeded segments between test images (skipped when current)."""
    run_dir = Path(run_dir)
    weights = run_dir / WEIGHTS
    path = run_dir / SEGMENTS
    rec = _read(path) if output_is_current(path, weights) else None
    if rec is not None and rec.get("pairs") == r.segments and rec.get("seed") == r.segments_seed:
        return {"skipped": True}
    net = load_net(weights)
    (f,) = write_image_sections(weights, net, Box.uniform(net.n_inputs), run_dir, segments=r.segments,
                                segments_seed=r.segments_seed)
    return {"skipped": False, "line": f.line}


def _global_record(run_dir: Path, weights: Path, tol: float) -> dict | None:
    path = run_dir / regions_file_name(DEFAULT_DOMAIN)
    if not output_is_current(path, weights, tol=tol, domain=DEFAULT_DOMAIN, read=read_regions):
        return None
    return read_regions(path)


def global_step(run_dir: str, r: Recipe, deadline: float | None = None) -> dict:
    """The count on [0,1]^n0 with its time limit (stable units, bounds, the exact count where it finishes), then
    the estimate where it is incomplete. A current count made with at least this time limit (or complete) is
    kept; one cut shorter (a phase limit, a kill) is continued with resume."""
    run_dir = Path(run_dir)
    weights = run_dir / WEIGHTS
    did = []
    rec = _global_record(run_dir, weights, r.tol)
    counted = rec is not None and rec.get("backend") not in ("estimate", "mipbound")
    short = counted and not rec.get("complete") and float((rec.get("stats") or {}).get("time_limit") or 0) < \
        0.95 * r.global_time_limit
    if not counted or short:
        left = _left(deadline)
        limit = r.global_time_limit if left is None else max(1.0, min(r.global_time_limit, left))
        resume = (run_dir / checkpoint_file_name(DEFAULT_DOMAIN)).exists() or short
        try:
            rec = count_run(weights, None, tol=r.tol, time_limit=limit, resume=resume, progress=False,
                            data_samples=r.global_data_samples)
        except ToolError:
            if not resume:
                raise
            rec = count_run(weights, None, tol=r.tol, time_limit=limit, resume=False, progress=False,
                            data_samples=r.global_data_samples)
        did.append("count")
    est = (rec or {}).get("estimate") or {}
    if r.estimate and not rec.get("complete") and est.get("requested") != r.estimate:
        left = _left(deadline)
        limit = r.estimate_time_limit if left is None else max(1.0, min(r.estimate_time_limit, left))
        rec, _ = estimate_run(weights, None, probes=r.estimate, tol=r.tol, time_limit=limit, progress=False,
                              data_samples=r.global_data_samples)
        did.append("estimate")
    return {"skipped": not did, "did": did, "count": rec.get("count"), "complete": rec.get("complete")}


def box_domain(image: int, width: float):
    """(center label, width, Box) of the local box around test image `image` (the flags' own naming)."""
    (d,), _ = domains_for(DomainSpec(0.0, 1.0, None, str(image), repr(float(width))), 784)
    return d


def box_file(run_dir: Path, image: int, width: float) -> Path:
    return Path(run_dir) / BOX_DIR / f"{sweep_stem([(f'test{image}', float(width))])}.json"


def box_row(run_dir: Path, weights_sha: str, image: int, width: float, box_time_limit: float) -> dict | None:
    """The row of a box counted before, when it stands: current (these weights) and complete, or stopped by a
    box time limit at least this one (an incomplete box given less time is counted again)."""
    path = box_file(run_dir, image, width)
    if not output_is_current(path, None, weights_sha=weights_sha):
        return None
    rows = (_read(path) or {}).get("rows") or []
    if len(rows) != 1:
        return None
    row = rows[0]
    if row.get("complete") or float(row.get("seconds") or 0) >= 0.95 * box_time_limit:
        return row
    return None


def boxes_step(run_dir: str, images, widths, r: Recipe, deadline: float | None = None) -> dict:
    """Exact counts of the local boxes (images x widths) of one run, one box at a time, each its own time limit
    (cut to the phase's deadline); a box already counted (box_row) is skipped. Returns the counts of this call."""
    run_dir = Path(run_dir)
    weights = run_dir / WEIGHTS
    sha = file_sha256(weights)
    net = None
    counted = skipped = 0
    stopped = False
    for i in images:
        for w in widths:
            if box_row(run_dir, sha, i, w, r.box_time_limit) is not None:
                skipped += 1
                continue
            left = _left(deadline)
            if left is not None and left < 1.0:
                stopped = True
                break
            net = net or load_net(weights)
            count_sweep(weights, [box_domain(i, w)], net=net, out_dir=run_dir / BOX_DIR, progress=False,
                        time_limit=r.box_time_limit if left is None else min(r.box_time_limit, left),
                        tol=r.tol, data_samples=r.box_data_samples, mnist=False)
            counted += 1
        if stopped:
            break
    return {"skipped": counted == 0 and not stopped, "counted": counted, "reused": skipped, "stopped": stopped}


def _task(kind: str, run_dir: str, args: tuple) -> dict:
    """One step of one run, its time and its error (an error is reported, not raised: the study goes on)."""
    t0 = time.perf_counter()
    try:
        fn = {"segments": segments_step, "global": global_step, "boxes": boxes_step}[kind]
        out = fn(run_dir, *args)
    except KeyboardInterrupt:
        raise
    except Exception as e:              # a failing step is named in the report; the others go on
        msg = str(e) if isinstance(e, ToolError) else f"{e.__class__.__name__}: {e}"
        out = {"skipped": False, "error": msg.splitlines()[0] if msg else e.__class__.__name__,
               "traceback": "" if isinstance(e, ToolError) else traceback.format_exc()}
    out.update(kind=kind, run_dir=run_dir, seconds=round(time.perf_counter() - t0, 3))
    return out


def run_tasks(session: Session, tasks: list[tuple], desc: str, progress: bool) -> list[dict]:
    """Every (kind, run_dir, args) task: one after the other in this process, or as Ray tasks (at most
    session.slots at once) when the session is parallel. Results in task order."""
    bar = progress_bar(len(tasks), progress, desc)
    out: list = [None] * len(tasks)
    try:
        if not session.parallel:
            for k, t in enumerate(tasks):
                out[k] = _task(*t)
                bar.update(1)
            return out
        waiting = list(range(len(tasks)))
        running: dict = {}
        try:
            while waiting or running:
                while waiting and len(running) < session.slots:
                    k = waiting.pop(0)
                    running[session.submit(_task, *tasks[k])] = k
                for h in session.wait(list(running), timeout=1.0):
                    out[running.pop(h)] = session.result(h)
                    bar.update(1)
        except BaseException:
            session.cancel(list(running))
            raise
        return out
    finally:
        bar.close()


# ---- the pilot: choosing the two widths ------------------------------------------------------------------
def choose_widths(candidates, counts: dict, affordable: dict, handful: int) -> tuple[tuple, str]:
    """The two widths from the pilot's measurements: `counts[c]` = {run: [count per pilot image]} at candidate c
    (measured candidates only), `affordable[c]` = every pilot box of c completed within its time limit. The first
    affordable candidate whose median box (all pilot runs' boxes pooled) holds at least `handful` regions, and
    the next affordable one; when the next is not affordable (or absent), the one before it; when no candidate
    reaches the handful, the two largest affordable ones. Returns ((w1, w2), why)."""
    ok = [c for c in candidates if c in counts and affordable.get(c)]
    if len(ok) < 2:
        raise ToolError(f"pilot: fewer than two affordable widths among {list(candidates)} (measured: "
                        f"{sorted(counts)}); raise --box-time-limit or give --widths L1,L2")
    med = {c: float(np.median([x for v in counts[c].values() for x in v])) for c in ok}
    enough = [c for c in ok if med[c] >= handful]
    if enough:
        c = enough[0]
        j = ok.index(c)
        first = f"{c:g} is the first width whose median pilot box holds at least {handful} regions ({med[c]:g})"
        if j + 1 < len(ok):
            return (c, ok[j + 1]), f"{first}; {ok[j + 1]:g} the next (median {med[ok[j + 1]]:g})"
        return (ok[j - 1], c), (f"{first}; no larger width was affordable, so {ok[j - 1]:g} (median "
                                f"{med[ok[j - 1]]:g}) is the other")
    return (ok[-2], ok[-1]), (f"no affordable width reached a median pilot box of {handful} regions (largest: "
                              f"{med[ok[-1]]:g} at {ok[-1]:g}); the two largest affordable ones")


def pilot_runs(records) -> list:
    """The pilot's runs: of the first seed, working (not broken), adv none and dropout 0 at the smallest and
    the largest l1, and an adversarially trained one (dropout 0) at the smallest l1."""
    recs = [r for r in records if r.l1 is not None and not r.broken and r.config is not None]
    if not recs:
        return []
    seed0 = min((r.seed for r in recs), key=lambda s: (s is None, s))
    recs = [r for r in recs if r.seed == seed0]
    plain = sorted([r for r in recs if r.adv == "none" and r.dropout == 0], key=lambda r: r.l1)
    adv = sorted([r for r in recs if r.adv not in (None, "none") and r.dropout == 0], key=lambda r: r.l1)
    pick = plain[:1] + plain[-1:] + adv[:1]
    out = []
    for r in pick:
        if r.run_id not in [o.run_id for o in out]:
            out.append(r)
    return out


# ---- the study ---------------------------------------------------------------------------------------------
@dataclass
class Study:
    """Where a study reads and writes, and how it runs."""

    recipe: Recipe
    models_dir: Path = Path(DEFAULT_MODELS_DIR)
    out: Path = Path("plots/out/study")
    start: int = 100
    workers: int = 1
    ray_address: str | None = None
    train: bool = True
    quiet: bool = False
    formats: tuple = ("png", "pdf")
    command: str = ""
    log: object = None
    worked: bool = False                # a phase of this invocation did work (else a current report is kept)
    state: dict = field(default_factory=dict)

    def __post_init__(self):
        self.models_dir, self.out = Path(self.models_dir), Path(self.out)
        if self.log is None:
            self.log = (lambda m: None) if self.quiet else (lambda m: print(m, flush=True))

    @property
    def run_ids(self) -> list[int]:
        return [self.start + k for k in range(len(sweep_settings(self.recipe)))]

    def run_dir(self, rid: int) -> Path:
        return run_path(self.models_dir, rid)


def _load_state(study: Study) -> dict:
    """study.json: kept (phase times summed) when it is of the same settings, else started afresh."""
    path = study.out / STATE
    settings = {**study.recipe.settings(), "start": study.start, "models_dir": str(study.models_dir)}
    old = _read(path) if path.is_file() else None
    if old and old.get("settings") == settings:
        return old
    return {"settings": settings, "phases": {}, "widths": None, "pilot": None, "commands": []}


def _save_state(study: Study) -> None:
    atomic_write_json(study.out / STATE, study.state)


def _phase(study: Study, name: str, seconds: float, worked: bool, **info) -> None:
    """Add a phase's seconds to study.json (only when it did work: a resumed phase that skipped everything
    adds nothing) and note what it did last."""
    ph = study.state["phases"].setdefault(name, {"seconds": 0.0, "invocations": 0})
    if worked:
        study.worked = study.worked or name != "report"
        ph["seconds"] = round(ph["seconds"] + seconds, 2)
        ph["invocations"] += 1
    ph["last"] = {"seconds": round(seconds, 2), "worked": worked, **info}
    _save_state(study)


def _errors(results) -> list[str]:
    return [f"{Path(x['run_dir']).name}: {x['kind']}: {x['error']}" for x in results if x and x.get("error")]


def train_phase(study: Study) -> None:
    """train_sweep for every seed of the recipe (Ray with workers > 1); its run table goes to <out>/logs/."""
    r = study.recipe
    t0 = time.perf_counter()
    kw = dict(models_dir=study.models_dir, epochs=r.epochs, train_subset=r.train_subset, workers=study.workers,
              ray_address=study.ray_address, quiet=study.quiet, seeds=list(r.seeds), recipe=r.training_recipe)
    for k in ("adv_eps", "adv_steps", "adv_step_size"):
        if getattr(r, k) is not None:
            kw[k] = getattr(r, k)
    buf = io.StringIO()
    done_before = sum(is_complete(study.run_dir(i)) for i in study.run_ids)
    summary = train_sweep(study.start, r.arch, r.l1, r.adv, r.dropout, out=buf, **kw)
    (study.out / "logs").mkdir(parents=True, exist_ok=True)
    atomic_write_text(study.out / "logs" / "train.log", buf.getvalue())
    trained = [s["run_id"] for s in summary if s.get("trained")]
    ids = [s["run_id"] for s in summary]
    if ids != study.run_ids:
        raise ToolError(f"train_sweep made runs {ids[:3]}... where the study expects {study.run_ids[:3]}...")
    study.log(f"train: {len(trained)} run(s) trained, {done_before} already complete "
              f"({time.perf_counter() - t0:.0f} s)")
    _phase(study, "train", time.perf_counter() - t0, bool(trained), trained=trained)


def _records(study: Study):
    return load_runs(study.models_dir, study.run_ids, DEFAULT_DOMAIN, study.recipe.min_accuracy)


def _per_run_phase(study, session, phase: str, label: str, verb: str, dirs: dict, r, progress) -> None:
    """One measuring phase over every ready run (tasks ("phase", run dir, (recipe,))), timed and logged."""
    t0 = time.perf_counter()
    res = run_tasks(session, [(phase, d, (r,)) for d in dirs.values()], label, progress)
    worked = any(not x.get("skipped") for x in res)
    _phase(study, phase, time.perf_counter() - t0, worked, errors=_errors(res))
    study.log(f"{phase}: {sum(not x.get('skipped') for x in res)} run(s) {verb} "
              f"({time.perf_counter() - t0:.0f} s)" + "".join(f"\n  error: {e}" for e in _errors(res)))


def measure_phases(study: Study, session: Session) -> None:
    r = study.recipe
    progress = not study.quiet
    ready = [i for i in study.run_ids if is_complete(study.run_dir(i))]
    missing = sorted(set(study.run_ids) - set(ready))
    if missing:
        study.log(f"not measured (training not complete): runs {', '.join(map(str, missing))}")
    study.state["measured_runs"] = ready
    dirs = {i: str(study.run_dir(i)) for i in ready}

    _per_run_phase(study, session, "segments", "segments", "measured", dirs, r, progress)  # cheap, exact
    _per_run_phase(study, session, "global", "global counts", "counted", dirs, r, progress)  # + stable, estimate

    # pilot: the widths
    if r.widths is not None:
        widths = tuple(r.widths)
        study.state["pilot"] = None                 # given, not chosen
    else:
        widths = pilot_phase(study, session, dirs)
    study.state["widths"] = list(widths)
    _save_state(study)

    # local boxes, image-major so that a cut phase leaves every run with the same images
    t0 = time.perf_counter()
    deadline = _deadline(r.local_time_limit)
    chunk = max(1, min(10, r.images // 4 or 1))
    tasks = [("boxes", dirs[i], (list(range(a, min(a + chunk, r.images))), list(widths), r, deadline))
             for a in range(0, r.images, chunk) for i in ready]
    res = run_tasks(session, tasks, "local boxes", progress)
    worked = any(not x.get("skipped") for x in res)
    stopped = any(x.get("stopped") for x in res)
    n_new = sum(x.get("counted", 0) for x in res)
    _phase(study, "local", time.perf_counter() - t0, worked, errors=_errors(res), stopped_by_time_limit=stopped,
           boxes_counted=n_new)
    study.log(f"local: {n_new} box(es) counted ({time.perf_counter() - t0:.0f} s)"
              + (" -- stopped by the phase's time limit; run again to continue" if stopped else "")
              + "".join(f"\n  error: {e}" for e in _errors(res)))
    for i in ready:
        write_run_sweep(Path(dirs[i]), r.images, widths, r.box_time_limit)


def pilot_phase(study: Study, session: Session, dirs: dict) -> tuple:
    """Measure the candidate widths on the pilot runs' first P images until choose_widths can answer."""
    r = study.recipe
    t0 = time.perf_counter()
    deadline = _deadline(r.pilot_time_limit)
    pilots = pilot_runs(_records(study))
    if not pilots:
        raise ToolError("pilot: no working run to choose the widths from (every run is broken or untrained); "
                        "give --widths L1,L2")
    images = list(range(r.pilot_images))
    counts, affordable, seconds = {}, {}, {}
    worked = False
    for c in r.width_candidates:
        res = run_tasks(session, [("boxes", dirs[p.run_id], (images, [c], r, deadline)) for p in pilots],
                        f"pilot width {c:g}", not study.quiet)
        worked |= any(not x.get("skipped") for x in res)
        if _errors(res):
            raise ToolError("pilot: " + "; ".join(_errors(res)))
        rows = {p.run_id: [box_row(Path(dirs[p.run_id]), file_sha256(Path(dirs[p.run_id]) / WEIGHTS), i, c,
                                   r.box_time_limit) for i in images] for p in pilots}
        if any(row is None for rs in rows.values() for row in rs):          # cut by the pilot's time limit
            break
        counts[c] = {rid: [row["count"] if row["complete"] else max(row["lower_bound"] or 0, row["count"] or 0)
                           for row in rs] for rid, rs in rows.items()}
        affordable[c] = all(row["complete"] for rs in rows.values() for row in rs)
        seconds[c] = float(np.median([row["seconds"] for rs in rows.values() for row in rs]))
        ok = [x for x in r.width_candidates if x in counts and affordable[x]]
        enough = [x for x in ok if np.median([y for v in counts[x].values() for y in v]) >= r.handful]
        if not affordable[c] or (enough and ok.index(enough[0]) + 1 < len(ok)):
            break
    widths, why = choose_widths(r.width_candidates, counts, affordable, r.handful)
    study.state["pilot"] = {"runs": [p.run_id for p in pilots], "images": images, "why": why,
                            "counts": {f"{c:g}": {str(k): v for k, v in m.items()} for c, m in counts.items()},
                            "affordable": {f"{c:g}": a for c, a in affordable.items()},
                            "median_box_seconds": {f"{c:g}": s for c, s in seconds.items()}}
    study.log(f"pilot: widths {widths[0]:g}, {widths[1]:g} ({why})")
    _phase(study, "pilot", time.perf_counter() - t0, worked, widths=list(widths))
    return widths


def write_run_sweep(run_dir: Path, images: int, widths, box_time_limit: float) -> Path | None:
    """The run's sweep table over images 0..K-1 x widths from its per-box tables (a box not counted yet is a row
    "not reached"); rewritten only when its rows change."""
    weights = run_dir / WEIGHTS
    sha = file_sha256(weights)
    rows = []
    for i in range(images):
        for w in widths:
            row = box_row(run_dir, sha, i, w, box_time_limit)
            if row is None:
                _, _, box = box_domain(i, w)
                row = {"center": f"test{i}", "width": float(w), "domain": box.name, "count": None,
                       "complete": False, "lower_bound": None, "seconds": 0.0, "note": "not reached (time limit)"}
            rows.append(row)
    path = run_dir / f"{sweep_stem(rows)}.json"
    old = _read(path) if path.is_file() else None
    if old and old.get("weights_sha256") == sha and old.get("rows") == rows:
        return path
    write_count_sweep(run_dir, weights, load_net(weights), rows)
    return path


# ---- the report ---------------------------------------------------------------------------------------------
def setting_table(records, widths) -> list[dict]:
    """One row per setting (l1, adv, dropout), the working runs of every seed pooled: runs, seeds, test accuracy
    (mean, min-max), the median of each paired measure with its percentile-bootstrap 95% interval, the stable
    units on [0,1]^n0 (median over the runs), and the broken runs left out."""
    keys = sorted({(r.l1, r.adv, r.dropout) for r in records if r.l1 is not None},
                  key=lambda k: (k[0], k[1] != "none", k[1], k[2]))
    out = []
    for k in keys:
        recs = [r for r in records if (r.l1, r.adv, r.dropout) == k]
        good = [r for r in recs if not r.broken]
        row = {"l1": k[0], "adv": k[1], "dropout": k[2], "runs": len(good),
               "seeds": ",".join(str(r.seed) for r in good), "broken": ",".join(str(r.run_id) for r in recs
                                                                             if r.broken)}
        acc = [r.test_accuracy for r in good if r.test_accuracy is not None]
        row["accuracy"] = (float(np.mean(acc)), min(acc), max(acc)) if acc else None
        for w in widths:
            vals = [v for r in good for v in r.local_counts_by_center(w).values()]
            row[f"local_{w:g}"] = (bootstrap_median_ci(vals, n_boot=N_BOOT), len(vals)) if vals else None
            uns = [x["unstable"] for r in good for x in (r.local or {}).get("rows") or []
                   if x.get("width") == w and x.get("complete") and isinstance(x.get("unstable"), int)]
            row[f"unstable_{w:g}"] = float(np.median(uns)) if uns else None
        vals = [v for r in good for v in r.segment_values]
        row["segments"] = (bootstrap_median_ci(vals, n_boot=N_BOOT), len(vals)) if vals else None
        st = [sum(c["active"] + c["inactive"] for c in r.stable_counts()) for r in good if r.stable_counts()]
        row["stable"] = float(np.median(st)) if st else None
        ina = [sum(c["inactive"] for c in r.stable_counts()) for r in good if r.stable_counts()]
        row["inactive"] = float(np.median(ina)) if ina else None
        est = [r.regions_estimate[0] for r in good if r.regions_estimate and not r.regions_complete]
        row["estimate"] = float(np.median(est)) if est else None
        cnt = [r.region_count for r in good if r.regions_complete]
        row["global_count"] = float(np.median(cnt)) if cnt else None
        out.append(row)
    return out


def _ci_text(cell, digits: int = 3) -> str:
    if cell is None:
        return ""
    ci, n = cell
    return f"{ci.median:.{digits}g} [{ci.low:.{digits}g}, {ci.high:.{digits}g}] (n={n})"


def setting_markdown(rows, widths) -> str:
    head = (["l1", "adv", "dropout", "runs (seeds)", "test acc mean (min-max)"]
            + [f"local count, width {w:g}: median [95% CI]" for w in widths]
            + ["regions per unit L2 length: median [95% CI]", "stable units on [0,1]^n0 (inactive)",
               f"unstable units per box, width {widths[0]:g} (median)" if widths else "unstable units per box",
               "global count / estimate", "broken, left out"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        acc = "" if r["accuracy"] is None else f"{r['accuracy'][0]:.4f} ({r['accuracy'][1]:.4f}-{r['accuracy'][2]:.4f})"
        glob = ("" if r["global_count"] is None and r["estimate"] is None else
                f"{r['global_count']:g}" if r["global_count"] is not None else f"~{r['estimate']:.2g} (estimate)")
        stable = "" if r["stable"] is None else f"{r['stable']:g} ({r['inactive']:g})"
        cells = ([fmt_l1(r["l1"]), r["adv"], f"{r['dropout']:g}", f"{r['runs']} ({r['seeds']})", acc]
                 + [_ci_text(r[f"local_{w:g}"]) for w in widths] + [_ci_text(r["segments"]), stable]
                 + ["" if not widths or r[f"unstable_{widths[0]:g}"] is None else f"{r[f'unstable_{widths[0]:g}']:g}"]
                 + [glob, r["broken"]])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdict_word(v) -> str:
    """How one factor's paired test reads against the paper's claim that it reduces the regions."""
    d, p = v.test.direction, v.test.pvalue
    if p >= ALPHA or d == 0:
        return "no significant difference"
    if d < 0:
        return ("fewer regions, in every seed" if v.seeds_holding == v.seeds
                else f"fewer regions pooled, in {v.seeds_holding}/{v.seeds} seeds")
    return ("MORE regions, in every seed" if v.seeds_holding == v.seeds
            else f"MORE regions pooled, in {v.seeds_holding}/{v.seeds} seeds")


def verdict_lines(trend) -> list[str]:
    """Per measure, one sentence per factor with its numbers and how it reads (`verdict_word`)."""
    lines = []
    for m, verdicts in trend.paired:
        if verdicts:
            lines.append(f"- **{m.name}**:")
            lines += [f"  - {v.summary()} — *{verdict_word(v)}*" for v in verdicts]
    return lines


def paper_answer(trend) -> list[str]:
    """Does l1 / adversarial training reduce the number of regions? One line per factor kind, every measure."""
    out = []
    for factor, claim in (("l1", "l1 regularisation reduces the number of regions"),
                          ("adv", "adversarial training reduces the number of regions"),
                          ("dropout", "dropout (not a claim of the paper)")):
        words = [(m.name, v.label, verdict_word(v), fmt_p(v.test.pvalue)) for m, vs in trend.paired for v in vs
                 if v.factor == factor]
        if not words:
            out.append(f"- {claim}: not measured (no paired runs)")
            continue
        agree = sum(w[2].startswith("fewer regions, in every") for w in words)
        out.append(f"- {claim}: {agree}/{len(words)} comparisons show fewer regions in every seed at p < {ALPHA:g} ("
                   + "; ".join(f"{lab} on {name.split(' around')[0].split(' along')[0]}: {word}"
                               for name, lab, word, _ in words) + ")")
    return out


def report_phase(study: Study) -> dict:
    """results.csv/.md and the verdict, the figures, the setting table and report.md in <out>."""
    from src.report.figures import draw, plot_paired_differences, plot_regions_ci

    t0 = time.perf_counter()
    r = study.recipe
    res = collect_results(study.models_dir, study.run_ids, study.out, DEFAULT_DOMAIN, min_accuracy=r.min_accuracy)
    records, trend = res["records"], res["trend"]
    widths = study.state.get("widths") or []
    figures, skipped = {}, {}
    for name in ("regions", "stable_units", "accuracy_regions", "local_regions", "segments"):
        try:
            figures[name] = draw(name, study.models_dir, study.run_ids, study.out, formats=study.formats,
                                 records=records)
        except ToolError as e:
            skipped[name] = str(e)
    for name, fn, args in (("regions_ci_vs_l1", plot_regions_ci, (records,)),
                           ("paired_differences", plot_paired_differences, (trend.paired,))):
        try:
            figures[name] = fn(*args, study.out / name, formats=study.formats)
        except ToolError as e:
            skipped[name] = str(e)
    rows = setting_table(records, widths)
    text = report_markdown(study, records, trend, rows, figures, skipped)
    atomic_write_text(study.out / REPORT, text)
    _phase(study, "report", time.perf_counter() - t0, True)
    return {"trend": trend, "records": records, "figures": figures, "skipped": skipped, "rows": rows}


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def report_markdown(study: Study, records, trend, rows, figures, skipped) -> str:
    r = study.recipe
    st = study.state
    widths = st.get("widths") or []
    ph = st.get("phases", {})
    total = sum(p.get("seconds", 0) for p in ph.values())
    lines = [f"# Study: {r.arch}, recipe {r.name} ({study.models_dir}, runs {study.run_ids[0]}-{study.run_ids[-1]})",
             "", f"Command: `{study.command}`" if study.command else "", "",
             "## Recipe", "",
             f"- training: {r.arch}, {r.epochs} epochs on {r.train_subset or 60000} images, l1 {{{r.l1}}} x adv "
             f"{{{r.adv}}} x dropout {{{r.dropout}}}, seeds {', '.join(map(str, r.seeds))}, training recipe "
             f"{r.training_recipe}" + (f", attack eps {r.adv_eps:g}" if r.adv_eps is not None else ""),
             f"- exact local counts: K = {r.images} boxes around test images 0..{r.images - 1} at widths "
             f"{', '.join(f'{w:g}' for w in widths)} ({'given' if r.widths else 'chosen by the pilot'}), "
             f"{r.box_time_limit:g} s per box, {r.box_data_samples} samples per box"
             + (f", the phase limited to {r.local_time_limit:g} s" if r.local_time_limit else ""),
             f"- exact 1-D sections: M = {r.segments} seeded segments between test images (seed {r.segments_seed})",
             f"- global: a count on [0,1]^n0 limited to {r.global_time_limit:g} s (stable units, bounds)"
             + (f", then --estimate {r.estimate} limited to {r.estimate_time_limit:g} s where it is incomplete"
                if r.estimate else ", no estimate"),
             ""]
    if st.get("pilot"):
        p = st["pilot"]
        lines += ["## Pilot (the widths)", "",
                  f"Runs {', '.join(map(str, p['runs']))}, test images {', '.join(map(str, p['images']))}: the exact "
                  "counts per run at each candidate width (median seconds per box; all boxes complete?):", ""]
        for c, m in p["counts"].items():
            lines.append(f"- width {c}: " + ", ".join(f"run {k}: {'/'.join(map(str, v))}" for k, v in m.items())
                         + f" ({p['median_box_seconds'][c]:.1f} s; {'yes' if p['affordable'][c] else 'no'})")
        lines += ["", f"Chosen: {', '.join(f'{w:g}' for w in widths)} — {p['why']}.", ""]
    lines += ["## Time per phase (summed over invocations that did work)", "", "| phase | seconds | |", "|---|---|---|"]
    lines += [f"| {k} | {ph[k]['seconds']:.0f} | {_hms(ph[k]['seconds'])} |" for k in PHASES if k in ph]
    lines += [f"| **total** | {total:.0f} | {_hms(total)} |", ""]
    errs = [e for k in PHASES for e in (ph.get(k, {}).get("last", {}).get("errors") or [])]
    if errs:
        lines += ["Errors of the last invocation:", ""] + [f"- {e}" for e in errs] + [""]
    if ph.get("local", {}).get("last", {}).get("stopped_by_time_limit"):
        lines += ["The local phase was stopped by its time limit: some boxes are not counted yet (the table says "
                  "how many per setting); run the same command again to continue.", ""]
    lines += ["## Does l1 / adversarial training reduce the number of regions?", ""] + paper_answer(trend) + [""]
    lines += ["## Verdict per factor and measure", "",
              "Paired on the same test images (local counts) and the same segments; Wilcoxon signed-rank, two-sided, "
              "zeros by Pratt; median ratio = median over the pairs of treated / baseline with its 95% percentile "
              f"bootstrap interval; a seed counts when its own test points the same way with p < {ALPHA:g}.", ""]
    lines += verdict_lines(trend) or ["(no paired measures yet)"]
    if trend.left_out:
        lines += ["", "Broken runs, drawn apart and left out of every test: "
                  + ", ".join(f"run {rid} ({why})" for rid, why in trend.left_out) + "."]
    lines += ["", "## Per setting (seeds pooled; broken runs left out)", "", setting_markdown(rows, widths),
              "## Figures", ""]
    for name, paths in figures.items():
        png = [p for p in paths if str(p).endswith(".png")]
        if png:
            lines.append(f"- `{name}`: ![{name}]({Path(png[0]).name})")
    for name, why in skipped.items():
        lines.append(f"- `{name}`: not drawn ({why})")
    lines += ["", "The per-run table: [results.md](results.md) (results.csv), with the older pair-count lines of the "
              "verdict below it.", ""]
    return "\n".join(lines)


def run_study(study: Study) -> dict:
    """Every phase in order (module docstring); returns the report phase's result (None when the report was
    current: no phase did any work and report.md is of these settings)."""
    study.out.mkdir(parents=True, exist_ok=True)
    study.state = _load_state(study)
    if study.command:
        study.state["commands"] = (study.state.get("commands") or [])[-9:] + [
            {"command": study.command, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}]
    _save_state(study)
    with Session(study.workers, study.ray_address) as session:
        if study.train:
            train_phase(study)
        measure_phases(study, session)
    if not study.worked and "report" in study.state["phases"] and (study.out / REPORT).is_file():
        study.log(f"report: current ({study.out / REPORT})")
        return None
    return report_phase(study)
