"""Training of the zoo's models (MLPs and small CNNs) on MNIST and the regularisation sweep behind
train_bulk_script.py.

One run: SGD (lr 0.01, momentum 0.9), batch 128, StepLR(50, 0.1), NLL on log-softmax plus
l1 = lambda * sum |W| over every Linear and Conv2d weight (biases excluded); optional adversarial
training, inputs clipped to [0, 1]; optional dropout after the last hidden layer. The whole data
set is one in-memory tensor and batches are slices of a seeded permutation (no DataLoader).

Two recipes of adversarial training (RECIPES, docs/training.md):
* "seed": each batch is replaced by its adversarial batch (PGD with random start at eps 0.1, or FGSM,
  attacked in eval mode) and one SGD step is taken on it, l1 over every layer;
* "authors": the authors' later code (yuxwind/ExactCompression, train_fcnn.py): one SGD step on the
  clean batch (l1 over every layer), whose input gradient then gives the adversarial batch
  (`authors_attack`: signed steps of 0.1 with that one fixed gradient, projected on the eps = 0.15 ball
  and [0, 1], i.e. FGSM at 0.15), and a second SGD step on it with l1 over the first layer only.

A sweep is the product l1 (outer) x adv x dropout (inner), repeated per seed (outermost); run ids are
start, start+1, ...
Each run writes `fcnn_run_<id>/` with config.json, model.pt, model.onnx, weights.dat (the dense
equivalent: from_torch_module of the trained model), train.log and metrics.json (docs/formats.md);
metrics.json gets `"complete": true` last, and a complete run is skipped on re-run unless force=True.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import math
import os
import platform
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.core.defaults import DEFAULT_MODELS_DIR
from src.core.errors import ToolError
from src.core.fault_hooks import pause_point
from src.io.files import atomic_open, atomic_write_text
from src.io.mnist import ensure_mnist, load_mnist_tensors
from src.io.readers.onnx_export import save_torch_onnx
from src.io.readers.torch_state import from_torch_module
from src.io.records import read_config, read_metrics, write_config, write_metrics
from src.io.run_dir import CONFIG, METRICS, MODEL, MODEL_ONNX, TRAIN_CHECKPOINT, TRAIN_LOG, WEIGHTS, run_path
from src.io.weights_file import save_net
from src.parallel import Session, check_address, resolve_address
from src.training.models import build_model, linear_weights, parse_arch

ADV_METHODS = ("pgd", "fgsm")

ADV_CHOICES = ("none",) + ADV_METHODS

RECIPES = ("seed", "authors")

# the attack each recipe trains with when adv_eps, adv_steps, adv_step_size are not given: the seed's PGD
# (eps 0.1, 10 steps of 0.02) and the authors' constants (train_fcnn.py: adversarial_epsilon 0.15,
# adversarial_step_size 0.1, adversarial_iterations 200)
RECIPE_ATTACK = {"seed": {"adv_eps": 0.1, "adv_steps": 10, "adv_step_size": 0.02},
                 "authors": {"adv_eps": 0.15, "adv_steps": 200, "adv_step_size": 0.1}}

# config keys that must agree for an existing complete run to be reused (not the machine ones)
_IDENTITY_KEYS = ("arch", "hidden_sizes", "l1", "adv", "adv_eps", "adv_steps", "adv_step_size", "dropout",
                  "epochs", "seed", "lr", "momentum", "batch_size", "lr_step", "lr_gamma", "train_subset", "recipe")

# what a config.json (or checkpoint) written before an identity key existed means by its absence
_IDENTITY_DEFAULTS = {"recipe": "seed"}


@dataclass
class TrainConfig:
    """Every hyper-parameter of one run (written verbatim to config.json, plus versions)."""
    run_id: int
    arch: str
    hidden_sizes: list = field(default_factory=list)
    l1: float = 0.0
    adv: str = "none"            # none | pgd | fgsm
    adv_eps: float | None = None  # None: the recipe's (RECIPE_ATTACK); config.json always holds the value used
    adv_steps: int | None = None
    adv_step_size: float | None = None
    dropout: float = 0.0
    epochs: int = 120
    seed: int = 0
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 128
    lr_step: int = 50
    lr_gamma: float = 0.1
    train_subset: int = 0         # first N training images; 0 = all 60000
    device: str = "cpu"
    threads: int = 1
    recipe: str = "seed"          # seed | authors (RECIPES)

    def __post_init__(self):
        if self.recipe in RECIPE_ATTACK:
            for k, v in RECIPE_ATTACK[self.recipe].items():
                if getattr(self, k) is None:
                    setattr(self, k, v)
        widths = parse_arch(self.arch)
        if not self.hidden_sizes:
            self.hidden_sizes = widths
        elif list(self.hidden_sizes) != widths:
            raise ToolError(f"hidden_sizes {self.hidden_sizes} do not match arch {self.arch!r} ({widths})")
        self.validate()

    def validate(self) -> None:
        def need(ok, msg):
            if not ok:
                raise ToolError(msg)
        need(self.recipe in RECIPES, f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        need(self.adv in ADV_CHOICES, f"adv must be one of {', '.join(ADV_CHOICES)}, got {self.adv!r}")
        need(not (self.recipe == "authors" and self.adv == "fgsm"),
             "--adv: 'fgsm' is not a setting of --recipe authors (its adversarial step is the authors' attack, "
             "an FGSM-like step: use none or pgd)")
        need(math.isfinite(self.l1) and self.l1 >= 0, f"--l1 values must be finite and >= 0, got {self.l1}")
        need(0.0 <= self.dropout < 1.0, f"--dropout values must be in [0, 1), got {self.dropout}")
        need(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        need(self.lr > 0 and math.isfinite(self.lr), f"--lr must be > 0, got {self.lr}")
        need(0.0 <= self.momentum < 1.0, f"--momentum must be in [0, 1), got {self.momentum}")
        need(self.lr_step >= 1, f"--lr-step must be >= 1, got {self.lr_step}")
        need(0.0 < self.lr_gamma <= 1.0, f"--lr-gamma must be in (0, 1], got {self.lr_gamma}")
        need(0.0 <= self.adv_eps <= 1.0, f"--adv-eps must be in [0, 1], got {self.adv_eps}")
        need(self.adv_steps >= 1, f"--adv-steps must be >= 1, got {self.adv_steps}")
        need(self.adv_step_size > 0, f"--adv-step-size must be > 0, got {self.adv_step_size}")
        need(self.train_subset >= 0, f"--train-subset must be >= 0, got {self.train_subset}")
        need(self.threads >= 1, f"--threads must be >= 1, got {self.threads}")
        need(self.device in ("cpu", "cuda") or self.device.startswith("cuda:"),
             f"device must be cpu or cuda, got {self.device!r}")

    def to_json(self) -> dict:
        import torch

        d = asdict(self)
        d["versions"] = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
        return d


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cuda' without a GPU raises ToolError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ToolError("--device cuda: no CUDA device is available (torch build or driver); use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise ToolError(f"--device must be cpu, cuda or auto, got {device!r}")
    return device


def is_complete(run_dir) -> bool:
    """True when run_dir/metrics.json exists and says complete: true."""
    p = Path(run_dir) / METRICS
    if not p.is_file():
        return False
    try:
        return read_metrics(p)["complete"] is True
    except ToolError:
        return False




def _identity(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    return {k: d[k] for k in _IDENTITY_KEYS}


def stored_identity(stored: dict) -> dict:
    """The identity keys of a stored config.json or checkpoint identity; a key it predates reads as its
    _IDENTITY_DEFAULTS value (a config without "recipe" is a run of the seed recipe)."""
    return {k: stored.get(k, _IDENTITY_DEFAULTS.get(k)) for k in _IDENTITY_KEYS}


def save_checkpoint(run_dir: Path, cfg: TrainConfig, epoch: int, model, opt, sched, gen, metrics: dict) -> None:
    """checkpoint.pt after `epoch`: model, optimizer, scheduler and every RNG state, written atomically."""
    import torch

    state = {"epoch": epoch, "identity": _identity(cfg), "metrics": metrics,
             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "generator": gen.get_state(), "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available() and str(cfg.device).startswith("cuda"):
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    with atomic_open(run_dir / TRAIN_CHECKPOINT, "wb") as fh:
        torch.save(state, fh)


def load_checkpoint(run_dir: Path, cfg: TrainConfig) -> dict | None:
    """The epoch checkpoint of an interrupted run of this very configuration, or None."""
    import torch

    p = run_dir / TRAIN_CHECKPOINT
    if not p.is_file():
        return None
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:                  # a damaged checkpoint costs the epochs, never the run
        print(f"notice: {p}: unreadable checkpoint ({e.__class__.__name__}); training from epoch 1", file=sys.stderr)
        return None
    if not isinstance(state, dict) or not isinstance(state.get("identity"), dict) or \
            stored_identity(state["identity"]) != _identity(cfg) or \
            not 1 <= int(state.get("epoch", 0)) <= cfg.epochs:
        return None
    return state


def _config_mismatch(run_dir: Path, cfg: TrainConfig) -> list[str]:
    p = run_dir / CONFIG
    old = stored_identity(read_config(p) if p.is_file() else {})
    new = _identity(cfg)
    return [f"{k}: {old[k]!r} there, {new[k]!r} requested" for k in _IDENTITY_KEYS if old[k] != new[k]]

# ---- the training step ------------------------------------------------------------------


def adversarial_batch(model, x, y, method: str, eps: float, steps: int, step_size: float, generator=None):
    """Adversarial inputs within the L_inf ball of radius eps around x, clipped to [0, 1].

    pgd: random start U(-eps, eps), then `steps` signed-gradient steps of `step_size`,
    each projected back onto the ball and [0, 1]. fgsm: one step of size eps from x.
    The model is put in eval mode while attacking (no dropout noise) and restored after.
    """
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    try:
        x = x.detach()
        lo, hi = (x - eps).clamp_(0.0, 1.0), (x + eps).clamp_(0.0, 1.0)
        if method == "pgd":
            # a seeded start is drawn on the generator's own device (the CPU) and moved: the same start on
            # every device, and no 'generator of another device' error when x is on a GPU
            noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device) if generator is not None \
                else torch.rand_like(x)
            x_adv = torch.max(torch.min(x + (2 * noise - 1) * eps, hi), lo)
            n_steps, size = steps, step_size
        elif method == "fgsm":
            x_adv, n_steps, size = x.clone(), 1, eps
        else:
            raise ToolError(f"unknown adversarial method {method!r}; use one of {', '.join(ADV_METHODS)}")
        for _ in range(n_steps):
            x_adv.requires_grad_(True)
            loss = F.nll_loss(F.log_softmax(model(x_adv), dim=1), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = torch.max(torch.min(x_adv.detach() + size * grad.sign(), hi), lo)
        return x_adv.detach()
    finally:
        model.train(was_training)


def authors_attack(x, grad, eps: float, step_size: float, steps: int):
    """The authors' adversarial batch (ExactCompression train_fcnn.py, `pgd_attack`): `steps` times
    v <- v + step_size * sign(grad) with the one input gradient `grad` of the clean training pass (never
    recomputed), each result clipped in their order: max with x - eps, max with 0, min with x + eps, min
    with 1 (the L_inf ball of radius eps around x, and [0, 1]).

    With a fixed gradient every coordinate moves one way until it sits at its bound, after which a step
    changes nothing; the loop stops at that fixed point, so the tensor is the one all `steps` iterations
    give (their 200 steps of 0.1 at eps 0.15 end after 2: min(x + 0.15, 1) where grad > 0,
    max(x - 0.15, 0) where grad < 0, x where grad == 0, i.e. FGSM at 0.15)."""
    import torch

    x = x.detach()
    lo, hi = x - eps, x + eps
    step = step_size * grad.detach().sign()
    v = x.clone()
    for _ in range(steps):
        new = torch.clamp_max(torch.minimum(torch.clamp_min(torch.maximum(v + step, lo), 0.0), hi), 1.0)
        if torch.equal(new, v):
            break
        v = new
    return v


def l1_penalty(model):
    """sum |W| over every Linear and Conv2d weight tensor (biases excluded; src.training.models.linear_weights)."""
    return sum(w.abs().sum() for w in linear_weights(model))


def first_layer_l1(model):
    """sum |W| of the first Linear or Conv2d weight only: the authors' l1 on adversarial batches (their loop over
    model.modules() breaks after the first nn.Linear; for a CNN here, its first Conv2d)."""
    return linear_weights(model)[0].abs().sum()


def evaluate(model, X, y, batch: int = 10000) -> float:
    """Clean accuracy of `model` on tensors X, y (eval mode, no grad)."""
    import torch

    was_training = model.training
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(X), batch):
            correct += int((model(X[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    model.train(was_training)
    return correct / max(len(X), 1)


ROBUST_STEPS_AUTHORS = 10          # PGD of the authors' recipe's robust accuracy: 10 steps of eps / 5


def robust_attack(cfg: TrainConfig) -> tuple[float, int, float]:
    """(eps, steps, step_size) of the PGD behind metrics.json's robust_accuracy: always the run's training eps;
    the seed recipe's own PGD steps and step size; the authors' recipe, whose training attack is no PGD
    (one fixed gradient), gets 10 steps of eps / 5, the seed's ratio (0.03 at 0.15)."""
    if cfg.recipe == "authors":
        return cfg.adv_eps, ROBUST_STEPS_AUTHORS, cfg.adv_eps / 5
    return cfg.adv_eps, cfg.adv_steps, cfg.adv_step_size


def robust_accuracy(model, X, y, cfg: TrainConfig, batch: int = 1000) -> dict:
    """Accuracy under PGD at the run's ε (robust_attack(cfg): cfg.adv_eps; with the seed recipe cfg.adv_steps
    steps of cfg.adv_step_size; a random start seeded by cfg.seed), whatever the run trained with: the record
    that adversarial training worked, and the same attack on the clean runs beside them."""
    import torch

    eps, steps, step_size = robust_attack(cfg)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(X), batch):
        xa = adversarial_batch(model, X[i:i + batch], y[i:i + batch], "pgd", eps, steps, step_size, generator=gen)
        with torch.inference_mode():
            correct += int((model(xa).argmax(1) == y[i:i + batch]).sum())
    model.train(was_training)
    return {"attack": "pgd", "eps": eps, "steps": steps, "step_size": step_size,
            "accuracy": correct / max(len(X), 1)}


def _sgd_step(opt, loss) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def authors_steps(model, opt, xb, yb, cfg: TrainConfig):
    """The authors' two SGD steps on one batch (train_fcnn.py, `train` with -v), the model in train mode
    throughout (dropout on): (1) the clean batch, loss NLL + l1 * (|W| of every layer); (2) its adversarial
    batch, made by `authors_attack` from the input gradient of step (1)'s loss (the parameters before
    that step, its dropout mask), loss NLL + l1 * (|W| of the first layer only). Returns the two losses'
    sum (detached)."""
    import torch.nn.functional as F

    xb = xb.detach().clone().requires_grad_(True)
    loss = F.nll_loss(F.log_softmax(model(xb), dim=1), yb)
    if cfg.l1 > 0:
        loss = loss + cfg.l1 * l1_penalty(model)
    _sgd_step(opt, loss)
    x_adv = authors_attack(xb.detach(), xb.grad, cfg.adv_eps, cfg.adv_step_size, cfg.adv_steps)
    adv_loss = F.nll_loss(F.log_softmax(model(x_adv), dim=1), yb)
    if cfg.l1 > 0:
        adv_loss = adv_loss + cfg.l1 * first_layer_l1(model)
    _sgd_step(opt, adv_loss)
    return loss.detach() + adv_loss.detach()


def train_epoch(model, opt, X, y, cfg: TrainConfig, generator, bar=None) -> float:
    """One epoch over X (in-memory, seeded permutation); returns the mean training objective over the
    epoch's SGD steps (two per batch with the authors' recipe and adversarial training: clean, adversarial)."""
    import torch.nn.functional as F
    import torch

    model.train()
    n = len(X)
    perm = torch.randperm(n, generator=generator).to(X.device)
    authors = cfg.recipe == "authors" and cfg.adv != "none"
    total, steps = 0.0, 0
    for i in range(0, n, cfg.batch_size):
        idx = perm[i:i + cfg.batch_size]
        xb, yb = X[idx], y[idx]
        if authors:
            total = total + authors_steps(model, opt, xb, yb, cfg)
            steps += 2
        else:
            if cfg.adv != "none":
                xb = adversarial_batch(model, xb, yb, cfg.adv, cfg.adv_eps, cfg.adv_steps, cfg.adv_step_size)
            loss = F.nll_loss(F.log_softmax(model(xb), dim=1), yb)
            if cfg.l1 > 0:
                loss = loss + cfg.l1 * l1_penalty(model)
            _sgd_step(opt, loss)
            total = total + loss.detach()  # stays on the device: no per-batch sync
            steps += 1
        if bar is not None:
            bar.update(1)
    total = float(total)
    if not math.isfinite(total):
        raise ToolError(f"run {cfg.run_id}: training loss became {total} (diverged); lower --lr or --l1")
    return total / max(steps, 1)

# ---- one run ----------------------------------------------------------------------------


class _Log:
    """train.log kept in memory and rewritten atomically after every addition."""

    def __init__(self, path: Path, echo: bool):
        self.path, self.echo, self.lines = path, echo, []

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        self.lines.append(line)
        atomic_write_text(self.path, "\n".join(self.lines) + "\n")
        if self.echo:

            tqdm.write(msg, file=sys.stderr)


def train_run(cfg: TrainConfig, run_dir, quiet: bool = False, bars: bool = True, data_root=None) -> dict:
    """Train one run into run_dir and return its metrics dict (complete: true).

    Writes config.json first, an incomplete metrics.json, then per epoch train.log, metrics.json
    and checkpoint.pt, finally model.pt, model.onnx, weights.dat (the dense equivalent, the same function)
    and metrics.json with complete: true (last).
    An exception, Ctrl-C or a kill leaves metrics.json incomplete; the next call resumes from the
    last epoch checkpoint of the same configuration and ends with the same weights as an
    uninterrupted run (same seed, CPU).
    """
    import torch


    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    metrics_path = run_dir / METRICS
    ckpt = load_checkpoint(run_dir, cfg)
    if ckpt is None:
        metrics = {"epochs": [], "test_accuracy": None, "train_accuracy": None, "seconds": 0.0, "complete": False}
        with contextlib.suppress(FileNotFoundError):
            (run_dir / TRAIN_CHECKPOINT).unlink()
    else:
        metrics = dict(ckpt["metrics"], complete=False)
    write_metrics(metrics_path, metrics)  # first: a stale complete:true must never survive a re-run
    write_config(run_dir / CONFIG, cfg.to_json())
    log = _Log(run_dir / TRAIN_LOG, echo=not quiet and not bars)
    if ckpt is not None and (run_dir / TRAIN_LOG).is_file():
        log.lines = (run_dir / TRAIN_LOG).read_text(errors="replace").splitlines()
    log(f"run {cfg.run_id}: arch {cfg.arch} {cfg.hidden_sizes}, l1 {cfg.l1:g}, adv {cfg.adv}, dropout {cfg.dropout:g}, "
        f"{cfg.epochs} epochs, seed {cfg.seed}, recipe {cfg.recipe}, device {device}, threads {cfg.threads}, "
        f"pid {os.getpid()} on {socket.gethostname()}")
    if ckpt is not None:
        log(f"resuming after epoch {ckpt['epoch']} from {TRAIN_CHECKPOINT}")

    Xtr, ytr = load_mnist_tensors("train", data_root, device, limit=cfg.train_subset)
    Xte, yte = load_mnist_tensors("test", data_root, device)
    log(f"data: {len(Xtr)} training and {len(Xte)} test images in memory, pixels in [0, 1]")
    model = build_model(cfg.arch, dropout=cfg.dropout, seed=cfg.seed).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    gen = torch.Generator().manual_seed(cfg.seed)
    first = 1
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        if "cuda_rng" in ckpt and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        first = int(ckpt["epoch"]) + 1
    n_batches = math.ceil(len(Xtr) / cfg.batch_size)

    show = bars and not quiet
    t0 = time.perf_counter() - float(metrics.get("seconds") or 0.0)
    ebar = tqdm(total=cfg.epochs, initial=first - 1, desc=f"run {cfg.run_id} epochs", unit="ep", file=sys.stderr,
                disable=not show)
    try:
        for epoch in range(first, cfg.epochs + 1):
            te = time.perf_counter()
            with tqdm(total=n_batches, desc=f"epoch {epoch}", unit="batch", leave=False, file=sys.stderr,
                      disable=not show) as bbar:
                loss = train_epoch(model, opt, Xtr, ytr, cfg, gen, bbar)
            sched.step()
            train_acc, test_acc = evaluate(model, Xtr, ytr), evaluate(model, Xte, yte)
            secs = time.perf_counter() - te
            metrics["epochs"].append({"epoch": epoch, "loss": loss, "train_acc": train_acc, "test_acc": test_acc,
                                      "seconds": secs})
            metrics["seconds"] = time.perf_counter() - t0
            save_checkpoint(run_dir, cfg, epoch, model, opt, sched, gen, metrics)
            write_metrics(metrics_path, metrics)
            pause_point("epochs", epoch)         # kill tests only: $RELU_TOOLKIT_PAUSE_AFTER
            log(f"epoch {epoch}/{cfg.epochs}: loss {loss:.4f} train_acc {train_acc:.4f} test_acc {test_acc:.4f} "
                f"({secs:.1f}s)")
            ebar.set_postfix(loss=f"{loss:.3f}", test=f"{test_acc:.3f}")
            ebar.update(1)
    except KeyboardInterrupt:
        log("interrupted: run left incomplete")
        raise
    finally:
        ebar.close()

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_open(run_dir / MODEL, "wb") as fh:
        torch.save(state, fh)
    cpu_model = model if device == "cpu" else copy.deepcopy(model).to("cpu")
    save_torch_onnx(cpu_model, run_dir / MODEL_ONNX, (Xte.shape[1],))
    net = from_torch_module(cpu_model)        # a CNN's dense equivalent; an MLP's Linear weights as they are
    test_acc = metrics["epochs"][-1]["test_acc"]
    save_net(net, run_dir / WEIGHTS, model_path=str(run_dir / MODEL), accuracy=test_acc)
    robust = robust_accuracy(model, Xte, yte, cfg)
    metrics.update(test_accuracy=test_acc, train_accuracy=metrics["epochs"][-1]["train_acc"],
                   robust_accuracy=robust, seconds=time.perf_counter() - t0)
    log(f"done: test accuracy {test_acc:.4f}, train accuracy {metrics['train_accuracy']:.4f}, "
        f"robust accuracy {robust['accuracy']:.4f} (PGD, eps {cfg.adv_eps:g}), {metrics['seconds']:.1f}s")
    metrics["complete"] = True
    write_metrics(metrics_path, metrics)  # last
    with contextlib.suppress(FileNotFoundError):
        (run_dir / TRAIN_CHECKPOINT).unlink()
    return metrics

# ---- the sweep --------------------------------------------------------------------------


def sweep_configs(start: int, arch: str, l1s, advs, dropouts, seeds=None, **common) -> list[TrainConfig]:
    """One TrainConfig per (l1, adv, dropout), l1 outermost; ids start, start+1, ...

    With seeds [s0, s1, ...] the whole sweep is repeated per seed: the n combos for s0 get ids
    start .. start+n-1, those for s1 start+n .. start+2n-1, and so on (common then holds no seed)."""
    hidden = parse_arch(arch)
    combos = list(itertools.product(l1s, advs, dropouts))
    if seeds is None:
        return [TrainConfig(run_id=start + i, arch=arch, hidden_sizes=list(hidden), l1=l1, adv=adv, dropout=p,
                            **common) for i, (l1, adv, p) in enumerate(combos)]
    return [TrainConfig(run_id=start + k * len(combos) + i, arch=arch, hidden_sizes=list(hidden), l1=l1, adv=adv,
                        dropout=p, seed=s, **common)
            for k, s in enumerate(seeds) for i, (l1, adv, p) in enumerate(combos)]


def _status(cfg: TrainConfig, models_dir, force: bool) -> str:
    d = run_path(models_dir, cfg.run_id)
    if not d.exists():
        return "new"
    if is_complete(d):
        if force:
            return "redo"
        bad = _config_mismatch(d, cfg)
        if bad:
            raise ToolError(f"{d} holds a complete run with a different configuration ({'; '.join(bad[:3])}); "
                            "use another --start, or --force to overwrite it")
        return "done"
    ck = load_checkpoint(d, cfg)
    return f"resume@{ck['epoch']}" if ck is not None else "restart"


def format_table(configs, statuses) -> str:
    rows = [("id", "arch", "l1", "adv", "dropout", "epochs", "seed", "recipe", "status")]
    rows += [(str(c.run_id), c.arch, f"{c.l1:g}", c.adv, f"{c.dropout:g}", str(c.epochs), str(c.seed), c.recipe, s)
             for c, s in zip(configs, statuses)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def train_task(cfg_dict: dict, run_dir: str, data_root) -> dict:
    """Ray task: one run with its own torch thread count (1 by default), no bars. A retry after the
    worker died resumes from the run's last epoch checkpoint (train_run does)."""
    import torch

    torch.set_num_threads(cfg_dict["threads"])
    cfg = TrainConfig(**cfg_dict)
    return train_run(cfg, run_dir, quiet=True, bars=False, data_root=data_root)


def longest_first(configs) -> list:
    """The order in which a sweep's runs are handed to workers: the longest first, so that the last
    run to start is a short one. A run's cost is its epochs times the forward-backward passes per
    batch (1, plus the attack's steps on adversarial batches; 2 for FGSM's single step and for the authors'
    recipe, whose attack reuses the clean step's gradient); ties keep the sweep's order."""
    def cost(c):
        if c.adv == "none":
            passes = 1
        elif c.adv == "fgsm" or c.recipe == "authors":
            passes = 2
        else:
            passes = 1 + c.adv_steps
        return c.epochs * passes
    return sorted(configs, key=lambda c: -cost(c))


def _train_on_ray(session, todo, models_dir: Path, data_root, quiet: bool, out) -> dict:
    """Every config of todo as one Ray task (threads CPUs, one GPU with --device cuda), at most
    session.slots at once, longest first; returns {run_id: metrics}. Ctrl-C or an error cancels
    what still runs."""

    results = {}
    waiting = longest_first(todo)
    running: dict = {}
    try:
        with tqdm(total=len(todo), desc="runs", unit="run", file=sys.stderr, disable=quiet) as bar:
            while waiting or running:
                while waiting and len(running) < session.slots:
                    c = waiting.pop(0)
                    gpus = 1 if str(c.device).startswith("cuda") else 0
                    h = session.submit(train_task, asdict(c), str(run_path(models_dir, c.run_id)), data_root,
                                       num_cpus=c.threads, num_gpus=gpus)
                    running[h] = c
                for h in session.wait(list(running), timeout=1.0):
                    c = running.pop(h)
                    m = session.result(h)
                    results[c.run_id] = m
                    bar.write(f"run {c.run_id}: test accuracy {m['test_accuracy']:.4f} ({m['seconds']:.1f}s)", file=out)
                    bar.update(1)
    except BaseException:
        session.cancel(list(running))
        raise
    return results


def run_sweep(configs, models_dir=DEFAULT_MODELS_DIR, workers: int = 1, force: bool = False, quiet: bool = False,
              data_root=None, out=None, ray_address: str | None = None, jobs: int | None = None) -> list[dict]:
    """Train every config not yet complete; prints the run table first. Returns one summary per run.

    workers > 1 trains the runs as Ray tasks on a local Ray started here, ray_address (or $RAY_ADDRESS)
    on that cluster (src/parallel.py); workers 1 trains them one after the other in this process.
    `jobs` is the deprecated name of workers.
    """

    out = sys.stdout if out is None else out
    if jobs is not None:
        workers = jobs
    if workers < 1:
        raise ToolError(f"--workers must be >= 1, got {workers}")
    check_address(ray_address)                 # before anything is written
    models_dir = Path(models_dir)
    statuses = [_status(c, models_dir, force) for c in configs]
    print(format_table(configs, statuses), file=out, flush=True)
    todo = [c for c, s in zip(configs, statuses) if s != "done"]
    skipped = len(configs) - len(todo)
    if skipped:
        print(f"skipping {skipped} complete run(s) (use --force to retrain)", file=out, flush=True)
    if todo:

        ensure_mnist(data_root, quiet=quiet)  # build once, before any worker starts
    results = {}
    if todo and ((workers > 1 and len(todo) > 1) or resolve_address(ray_address) is not None):
        with Session(workers, ray_address) as session:
            results = _train_on_ray(session, todo, models_dir.resolve(), data_root, quiet, out)
    else:
        for c in todo:
            m = train_run(c, run_path(models_dir, c.run_id), quiet=quiet, bars=True, data_root=data_root)
            results[c.run_id] = m
            print(f"run {c.run_id}: test accuracy {m['test_accuracy']:.4f} ({m['seconds']:.1f}s)", file=out, flush=True)
    summary = []
    for c in configs:
        d = run_path(models_dir, c.run_id)
        m = results.get(c.run_id) or read_metrics(d / METRICS)
        summary.append({"run_id": c.run_id, "dir": str(d), "trained": c.run_id in results,
                         "test_accuracy": m.get("test_accuracy")})
    return summary

# ---- CLI --------------------------------------------------------------------------------


def _parse_list(text: str, flag: str, conv, check=None, check_msg: str = "") -> list:
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(t == "" for t in items):
        raise ToolError(f"{flag}: expected a comma-separated list, got {text!r}")
    out = []
    for t in items:
        try:
            v = conv(t)
        except (ValueError, TypeError):
            raise ToolError(f"{flag}: bad value {t!r} in {text!r}") from None
        if check is not None and not check(v):
            raise ToolError(f"{flag}: bad value {t!r} ({check_msg})")
        if v in out:
            raise ToolError(f"{flag}: value {t!r} is listed twice")
        out.append(v)
    return out


def _adv_value(t: str) -> str:
    t = t.lower()
    if t not in ADV_CHOICES:
        raise ValueError(t)
    return t


def _parse_seeds(seeds) -> list[int]:
    """--seeds as a comma-separated string or a list of ints: distinct integers >= 0, at least one."""
    if isinstance(seeds, str):
        return _parse_list(seeds, "--seeds", int, lambda v: v >= 0, "must be an integer >= 0")
    vals = list(seeds)
    if not vals:
        raise ToolError("--seeds: expected at least one seed")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ToolError(f"--seeds: bad value {v!r} (must be an integer >= 0)")
    if len(set(vals)) != len(vals):
        raise ToolError(f"--seeds: a seed is listed twice in {vals}")
    return [int(v) for v in vals]


def train_sweep(start: int = 100, arch: str = "fcnn4b", l1="0,2e-4,1e-3", adv=None, dropout="0,0.3", *,
                models_dir=DEFAULT_MODELS_DIR, force: bool = False, epochs: int = 120, seed: int | None = None,
                seeds: list[int] | str | None = None, recipe: str = "seed",
                lr: float = 0.01, momentum: float = 0.9, batch_size: int = 128, lr_step: int = 50,
                lr_gamma: float = 0.1, train_subset: int = 0, adv_method: str = "pgd", adv_eps: float | None = None,
                adv_steps: int | None = None, adv_step_size: float | None = None, workers: int = 1,
                jobs: int | None = None, ray_address: str | None = None, threads: int = 1, device: str = "cpu",
                quiet: bool = False, out=None) -> list[dict]:
    """The training step (train_bulk_script.py): one run per (l1, adv, dropout), ids start, start+1, ...

    l1, adv, dropout: comma-separated lists (as the flags take them); adv None means "none,<adv_method>".
    seed: one seed for every run (default 0); seeds [s0, s1, ...] (or "0,1,2"): the sweep once per seed,
    the n combos for s0 with ids start .. start+n-1, for s1 start+n .. start+2n-1, ...; not both.
    recipe: "seed" or "authors" (RECIPES; docs/training.md); adv_eps, adv_steps, adv_step_size None take
    the recipe's (RECIPE_ATTACK). Each run's config.json records its seed and recipe.
    Checks every value first (ToolError), then trains with `run_sweep` (the run table and one line per
    trained run go to `out`, default stdout). Returns run_sweep's summary, one dict per run.
    """
    if seed is not None and seeds is not None:
        raise ToolError("--seed and --seeds: give one of them, not both (--seeds 0,1,2 repeats the sweep per seed)")
    seed_list = _parse_seeds(seeds) if seeds is not None else None
    l1s = _parse_list(l1, "--l1", float, lambda v: math.isfinite(v) and v >= 0, "must be finite and >= 0")
    advs = _parse_list(f"none,{adv_method}" if adv is None else adv, "--adv", _adv_value)
    dropouts = _parse_list(dropout, "--dropout", float, lambda v: 0 <= v < 1, "must be in [0, 1)")
    if start < 0:
        raise ToolError(f"--start must be >= 0, got {start}")
    device = resolve_device(device)
    if jobs is not None:
        workers = jobs
        print("notice: --jobs is deprecated, use --workers", file=sys.stderr)

    check_address(ray_address)
    per_seed = {"seeds": seed_list} if seed_list is not None else {"seed": 0 if seed is None else seed}
    configs = sweep_configs(
        start, arch, l1s, advs, dropouts, adv_eps=adv_eps, adv_steps=adv_steps,
        adv_step_size=adv_step_size, epochs=epochs, lr=lr, momentum=momentum,
        batch_size=batch_size, lr_step=lr_step, lr_gamma=lr_gamma, train_subset=train_subset,
        device=device, threads=threads, recipe=recipe, **per_seed)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    return run_sweep(configs, models_dir, workers=workers, force=force, quiet=quiet, ray_address=ray_address,
                     out=out)
