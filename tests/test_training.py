import json

import numpy as np
import pytest
import torch
from conftest import run_cli

import src.training.train as training
from src.cli.train import main
from src.core.errors import ToolError
from src.io.mnist import load_mnist_arrays
from src.io.readers import load_net
from src.io.readers.torch_state import from_state_dict
from src.training.models import build_model
from src.training.train import (TrainConfig, adversarial_batch, authors_attack, evaluate, l1_penalty, robust_accuracy,
                                train_epoch, train_run)

FILES = {"config.json", "model.pt", "model.onnx", "weights.dat", "metrics.json", "train.log"}
CONFIG_KEYS = {"run_id", "arch", "hidden_sizes", "l1", "adv", "adv_eps", "adv_steps", "adv_step_size", "dropout",
               "epochs", "seed", "lr", "momentum", "batch_size", "lr_step", "lr_gamma", "train_subset", "device",
               "threads", "recipe", "versions"}


@pytest.mark.slow
def test_one_epoch_beats_chance(tmp_path):
    cfg = TrainConfig(run_id=7, arch="mlp:32", epochs=1, train_subset=3000, seed=0)
    m = train_run(cfg, tmp_path / "run", quiet=True)
    d = tmp_path / "run"
    assert {p.name for p in d.iterdir()} == FILES
    assert m["complete"] is True and m["test_accuracy"] > 0.5  # chance is 0.1
    saved = json.loads((d / "metrics.json").read_text())
    assert saved["complete"] is True and len(saved["epochs"]) == 1
    assert set(saved["epochs"][0]) == {"epoch", "loss", "train_acc", "test_acc", "seconds"}
    conf = json.loads((d / "config.json").read_text())
    assert set(conf) == CONFIG_KEYS and conf["hidden_sizes"] == [32] and conf["train_subset"] == 3000
    # weights.dat and model.pt hold the same net, and its float64 accuracy matches the metrics
    net = load_net(d / "weights.dat")
    state = torch.load(d / "model.pt", weights_only=True)
    for a, b in zip(net.weights, from_state_dict(state).weights):
        assert np.array_equal(a, b)
    X, y = load_mnist_arrays("test")
    assert abs(net.accuracy(X, y) - m["test_accuracy"]) <= 2e-4
    assert "Classification accuracy = " in (d / "weights.dat").read_text().splitlines()[1]


@pytest.mark.slow
def test_cnn_run_writes_its_dense_equivalent_and_onnx(tmp_path):
    """A CNN run (adversarial training and dropout on): weights.dat is the dense equivalent of model.pt's CNN,
    the same function as torch's float64 forward pass on MNIST test images; model.onnx and model.pt (with its
    config.json) read back as the same net; model.pt without its config.json is refused."""
    cfg = TrainConfig(run_id=3, arch="cnn_tiny", epochs=1, train_subset=500, l1=1e-4, adv="pgd", adv_steps=2,
                      dropout=0.3, seed=0)
    m = train_run(cfg, tmp_path / "run", quiet=True)
    d = tmp_path / "run"
    assert {p.name for p in d.iterdir()} == FILES and m["complete"] is True
    conf = json.loads((d / "config.json").read_text())
    assert conf["arch"] == "cnn_tiny" and conf["hidden_sizes"] == [64, 16]
    net = load_net(d / "weights.dat")
    assert net.layer_sizes == [784, 64, 16, 10]
    model = build_model("cnn_tiny", dropout=0.3)
    model.load_state_dict(torch.load(d / "model.pt", weights_only=True))
    model = model.double().eval()
    X, y = load_mnist_arrays("test")
    with torch.no_grad():
        ref = model(torch.from_numpy(X.astype(np.float64))).numpy()
    out = net.forward(X.astype(np.float64))
    assert np.abs(out - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())
    assert np.array_equal(out.argmax(1), ref.argmax(1))
    assert abs(float((out.argmax(1) == y).mean()) - m["test_accuracy"]) <= 2e-4      # float32 training, float64 here
    onnx_net = load_net(d / "model.onnx")
    assert onnx_net.layer_sizes == net.layer_sizes
    for a, b in zip(onnx_net.weights + onnx_net.biases, net.weights + net.biases):
        assert np.abs(a - b).max() <= 1e-6 * max(1.0, np.abs(b).max())
    np.testing.assert_allclose(onnx_net.forward(X[:500].astype(np.float64)), out[:500], rtol=1e-6, atol=1e-6)
    pt_net = load_net(d / "model.pt")             # read with the config.json beside it: the same net
    for a, b in zip(pt_net.weights + pt_net.biases, net.weights + net.biases):
        assert np.array_equal(a, b)
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "model.pt").write_bytes((d / "model.pt").read_bytes())
    with pytest.raises(ToolError, match=r"'1\.weight' \(4x1x7x7, a Conv2d weight\?\).*config\.json.*ONNX"):
        load_net(alone / "model.pt")


@pytest.mark.slow
def test_training_is_deterministic(tmp_path):
    cfg = dict(run_id=1, arch="mlp:6", epochs=1, train_subset=500, dropout=0.3, adv="pgd", adv_steps=2)
    a = train_run(TrainConfig(**cfg), tmp_path / "a", quiet=True)
    b = train_run(TrainConfig(**cfg), tmp_path / "b", quiet=True)
    assert a["epochs"][0]["loss"] == b["epochs"][0]["loss"]
    assert a["robust_accuracy"] == b["robust_accuracy"]
    assert a["robust_accuracy"]["eps"] == 0.1 and a["robust_accuracy"]["accuracy"] <= a["test_accuracy"]
    assert (tmp_path / "a/weights.dat").read_text().splitlines()[2:] == \
        (tmp_path / "b/weights.dat").read_text().splitlines()[2:]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pgd", "fgsm"])
def test_adversarial_batch_stays_in_ball_and_hurts(method):
    torch.manual_seed(0)
    model = build_model("mlp:20", seed=0)
    X, y = load_mnist_arrays("test")
    x, t = torch.tensor(X[:200]), torch.tensor(y[:200])
    xa = adversarial_batch(model, x, t, method, eps=0.1, steps=5, step_size=0.03)
    assert float((xa - x).abs().max()) <= 0.1 + 1e-6
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert float(loss(model(xa), t)) > float(loss(model(x), t)) + 0.05
    assert model.training  # mode restored


@pytest.mark.parametrize("arch", ["mlp:3", "cnn_small"])
def test_l1_penalty_counts_weights_not_biases(arch):
    model = build_model(arch, seed=0)
    kinds = (torch.nn.Linear, torch.nn.Conv2d)
    with torch.no_grad():
        for mod in model:
            if isinstance(mod, kinds):
                mod.bias.fill_(100.0)
    expected = sum(float(m.weight.detach().double().abs().sum()) for m in model if isinstance(m, kinds))
    assert abs(float(l1_penalty(model).detach()) - expected) < 1e-4
    if arch == "cnn_small":                 # the conv weights are in it: 4*25 + 8*4*9 parameters of 360 + 320 + 2
        conv = sum(float(m.weight.detach().double().abs().sum()) for m in model if isinstance(m, torch.nn.Conv2d))
        assert conv > 1 and abs(float(l1_penalty(model).detach()) - expected) < 1e-4


SWEEP = ["-a", "mlp:4", "--epochs", "1", "--train-subset", "256", "--adv-steps", "2", "-q"]


@pytest.mark.slow
def test_sweep_creates_12_runs_then_skips(tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["-s", "100", "--models-dir", str(models)] + SWEEP) == 0
    out = capsys.readouterr().out
    dirs = sorted(p.name for p in models.iterdir())
    assert dirs == [f"fcnn_run_{i}" for i in range(100, 112)]
    expected = [(l1, adv, p) for l1 in (0.0, 2e-4, 1e-3) for adv in ("none", "pgd") for p in (0.0, 0.3)]
    for i, (l1, adv, p) in enumerate(expected):
        d = models / f"fcnn_run_{100 + i}"
        assert {f.name for f in d.iterdir()} == FILES
        conf = json.loads((d / "config.json").read_text())
        assert (conf["run_id"], conf["l1"], conf["adv"], conf["dropout"]) == (100 + i, l1, adv, p)
        assert conf["arch"] == "mlp:4" and conf["epochs"] == 1 and conf["lr"] == 0.01 and conf["batch_size"] == 128
        assert json.loads((d / "metrics.json").read_text())["complete"] is True
    table = out.splitlines()
    assert table[0].split() == ["id", "arch", "l1", "adv", "dropout", "epochs", "seed", "recipe", "status"]
    assert table[1].split()[:8] == ["100", "mlp:4", "0", "none", "0", "1", "0", "seed"]
    assert table[12].split()[:5] == ["111", "mlp:4", "0.001", "pgd", "0.3"]

    stamps = {p: (p / "model.pt").stat().st_mtime_ns for p in models.iterdir()}
    assert main(["-s", "100", "--models-dir", str(models)] + SWEEP) == 0
    out = capsys.readouterr().out
    assert "skipping 12 complete run(s)" in out and out.count(" done") == 12
    assert stamps == {p: (p / "model.pt").stat().st_mtime_ns for p in models.iterdir()}

    # --force retrains; a different config on a complete run is refused
    assert main(["-s", "100", "--models-dir", str(models), "--l1", "0", "--adv", "none", "--dropout", "0",
                 "--force"] + SWEEP) == 0
    assert (models / "fcnn_run_100/model.pt").stat().st_mtime_ns != stamps[models / "fcnn_run_100"]
    assert (models / "fcnn_run_101/model.pt").stat().st_mtime_ns == stamps[models / "fcnn_run_101"]
    with pytest.raises(ToolError, match="different configuration.*epochs"):
        main(["-s", "100", "--models-dir", str(models), "--epochs", "2", "--l1", "0", "--adv", "none",
              "--dropout", "0", "-a", "mlp:4", "-q", "--train-subset", "256"])


@pytest.mark.slow
def test_interrupted_run_is_not_complete_and_is_redone(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = training.evaluate

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # during epoch 2
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training, "evaluate", flaky)
    args = ["-s", "5", "--models-dir", str(tmp_path), "--l1", "0", "--adv", "none", "--dropout", "0",
            "-a", "mlp:4", "--epochs", "3", "--train-subset", "256", "-q"]
    with pytest.raises(KeyboardInterrupt):
        main(args)
    d = tmp_path / "fcnn_run_5"
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["complete"] is False and len(metrics["epochs"]) == 1
    assert not (d / "weights.dat").exists() and "interrupted" in (d / "train.log").read_text()
    assert not training.is_complete(d)
    monkeypatch.setattr(training, "evaluate", real)
    capsys.readouterr()
    assert main(args) == 0
    assert "resume@1" in capsys.readouterr().out               # from the checkpoint of epoch 1
    assert "resuming after epoch 1" in (d / "train.log").read_text()
    assert training.is_complete(d) and len(json.loads((d / "metrics.json").read_text())["epochs"]) == 3


@pytest.mark.slow
def test_jobs_is_a_deprecated_alias_of_workers(tmp_path, capsys):
    args = ["-s", "0", "--models-dir", str(tmp_path), "--l1", "0", "--adv", "none", "--dropout", "0",
            "--jobs", "3", "-a", "mlp:4", "--epochs", "1", "--train-subset", "256", "-q"]
    assert main(args) == 0                      # one run: trained in this process, no Ray started
    assert "--jobs is deprecated, use --workers" in capsys.readouterr().err
    assert training.is_complete(tmp_path / "fcnn_run_0")
    assert " pid " in (tmp_path / "fcnn_run_0" / "train.log").read_text().splitlines()[0]
    with pytest.raises(ToolError, match="--workers must be >= 1"):
        main(args[:-9] + ["--workers", "0", "-a", "mlp:4", "--epochs", "1", "--train-subset", "256", "-q"])


def _cli(*args):
    return run_cli("train_bulk_script.py", *args, timeout=120)


@pytest.mark.slow
def test_cli_errors(tmp_path):
    r = _cli("-s", "1", "-a", "fcnn99", "--models-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: unknown arch 'fcnn99'") and "fcnn4b" in r.stderr
    r = _cli("--no-such-flag")
    assert r.returncode == 2 and "unrecognized arguments: --no-such-flag" in r.stderr
    r = _cli("--l1", "0,abc", "--models-dir", str(tmp_path))
    assert r.returncode == 2 and "error: --l1: bad value 'abc'" in r.stderr
    r = _cli("--adv", "none,pgdd", "--models-dir", str(tmp_path))
    assert r.returncode == 2 and "error: --adv: bad value 'pgdd'" in r.stderr
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_cli_help_lists_flags():
    r = _cli("--help")
    assert r.returncode == 0
    for flag in ("--start", "--arch", "--l1", "--adv", "--dropout", "--epochs", "--seed", "--seeds", "--recipe",
                 "--models-dir", "--workers",
                 "--jobs", "--ray-address",
                 "--threads", "--device", "--force", "--adv-method", "--adv-eps", "--adv-steps", "--adv-step-size",
                 "--train-subset", "--quiet"):
        assert flag in r.stdout


@pytest.mark.slow
def test_robust_accuracy_is_pgd_at_the_runs_eps():
    """eps = 0 cannot move a point: the clean accuracy; a real eps lowers it; the record says the attack."""
    model = build_model("mlp:20", seed=0)
    X, y = load_mnist_arrays("test")
    x, t = torch.tensor(X[:500]), torch.tensor(y[:500])
    clean = evaluate(model, x, t)
    r0 = robust_accuracy(model, x, t, TrainConfig(run_id=0, arch="mlp:20", adv_eps=0.0), batch=128)
    assert r0["accuracy"] == clean and r0["attack"] == "pgd" and r0["eps"] == 0.0
    r = robust_accuracy(model, x, t, TrainConfig(run_id=0, arch="mlp:20", adv_eps=0.3, adv_steps=5), batch=128)
    assert r["accuracy"] < clean or clean == 0.0
    assert r["steps"] == 5 and r["step_size"] == 0.02


def test_ray_sweep_hands_out_the_longest_runs_first():
    """PGD runs (1 + steps passes per batch) before FGSM (2) before clean runs; ties keep the sweep order."""
    cfgs = training.sweep_configs(100, "fcnn2b", [0.0, 1e-3], ["none", "pgd", "fgsm"], [0.0], epochs=2)
    got = [(c.run_id, c.adv) for c in training.longest_first(cfgs)]
    assert got == [(101, "pgd"), (104, "pgd"), (102, "fgsm"), (105, "fgsm"), (100, "none"), (103, "none")], got


# ---- recipes and seeds (issue 21) ---------------------------------------------------------------------------
# An independent transcription of the authors' training step (yuxwind/ExactCompression, train_fcnn.py at
# 9031599b22e34d2a93233603a25c1e0b68bc37bd: `train` with -v, `pgd_attack`, `basic_fgsm_attack`), written out
# as they do it: 200 iterations, torch.max / torch.min against zero and one tensors, the l1 loops over
# model.modules() with and without their `break`.

def _their_pgd_attack(image, epsilon, data_grad, step_size, n_iterations):
    perturbed = image.clone()
    zero, ones = torch.zeros(image.shape).type(image.type()), torch.ones(image.shape).type(image.type())
    for _ in range(n_iterations):
        new = perturbed + step_size * data_grad.sign()
        temp = torch.max(new, image - epsilon)
        temp = torch.max(temp, zero)
        temp = torch.min(temp, image + epsilon)
        perturbed = torch.min(temp, ones)
    return perturbed


def _their_l1(model, first_only):
    reg = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            reg += torch.sum(torch.abs(m.weight))
            if first_only:
                break
    return reg


def _their_epoch(model, opt, X, y, perm, batch, l1, first_only_on_adv=True):
    nll = torch.nn.functional.nll_loss
    model.train()
    for i in range(0, len(X), batch):
        idx = perm[i:i + batch]
        data, target = X[idx].clone(), y[idx]
        data.requires_grad = True
        output = torch.log_softmax(model(data), dim=1)
        loss = nll(output, target) + l1 * _their_l1(model, first_only=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        perturbed = _their_pgd_attack(data, 0.15, data.grad.data, 0.1, 200)
        output = torch.log_softmax(model(perturbed), dim=1)
        loss = nll(output, target) + l1 * _their_l1(model, first_only=first_only_on_adv)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_authors_attack_is_their_loop_exactly():
    """authors_attack (which stops at the fixed point) = their 200-iteration loop, tensor for tensor: pixels at 0
    and 1, zero gradients, an unsaturated single step and a small step that needs many iterations."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 50, generator=g)
    x[:, :10] = 0.0
    x[:, 10:20] = 1.0
    x[:, 20:23] = torch.tensor([0.1, 0.9, 0.149])
    grad = torch.randn(6, 50, generator=g)
    grad[:, ::7] = 0.0
    for eps, step, steps in [(0.15, 0.1, 200), (0.15, 0.1, 1), (0.15, 0.007, 200), (0.1, 0.02, 3)]:
        ref = _their_pgd_attack(x, eps, grad, step, steps)
        got = authors_attack(x, grad, eps, step, steps)
        assert torch.equal(got, ref), (eps, step, steps)
    # their constants give FGSM at 0.15: clip(x + 0.15 sign(grad), 0, 1), with x where the gradient is 0
    fgsm = torch.clamp(x + 0.15 * grad.sign(), 0.0, 1.0)
    assert torch.equal(authors_attack(x, grad, 0.15, 0.1, 200), fgsm)
    assert float((authors_attack(x, grad, 0.15, 0.1, 200) - x).abs().max()) <= 0.15 + 1e-6


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_authors_recipe_epoch_is_their_training_step(dropout):
    """One epoch of the authors' recipe on a tiny net = the transcription of their loop, parameter for parameter
    (clean SGD step with l1 over every layer, their attack from that step's input gradient, adversarial step
    with l1 over the first layer only); their l1 over every layer on the adversarial step would differ."""
    g = torch.Generator().manual_seed(1)          # MNIST-like rows: bytes / 255, most pixels 0, some 1
    X = torch.randint(0, 256, (64, 784), generator=g).float().div(255) * (torch.rand(64, 784, generator=g) < 0.3)
    X[:, ::50] = 1.0
    y = torch.randint(0, 10, (64,), generator=g)
    cfg = TrainConfig(run_id=0, arch="mlp:5-4", l1=1e-2, adv="pgd", dropout=dropout, batch_size=32,
                      recipe="authors")
    assert (cfg.adv_eps, cfg.adv_steps, cfg.adv_step_size) == (0.15, 200, 0.1)

    def fresh():
        torch.manual_seed(0)
        model = build_model("mlp:5-4", dropout=dropout, seed=0)
        return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    ours, opt = fresh()
    loss = train_epoch(ours, opt, X, y, cfg, torch.Generator().manual_seed(0))
    assert np.isfinite(loss)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    theirs, opt = fresh()
    _their_epoch(theirs, opt, X, y, perm, 32, 1e-2)
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(a, b), name
    other, opt = fresh()
    _their_epoch(other, opt, X, y, perm, 32, 1e-2, first_only_on_adv=False)
    assert not torch.equal(ours[2].weight, other[2].weight)      # the test sees where the l1 goes


def _old_config(run_dir, **over):
    """A config.json as the code before recipes wrote it (no "recipe" key) and a complete metrics.json."""
    cfg = TrainConfig(run_id=102, arch="mlp:4", adv="pgd", epochs=1, **over).to_json()
    del cfg["recipe"]
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    epoch = {"epoch": 1, "loss": 1.0, "train_acc": 0.5, "test_acc": 0.5, "seconds": 1.0}
    (run_dir / "metrics.json").write_text(json.dumps({"epochs": [epoch], "test_accuracy": 0.5, "train_accuracy": 0.5,
                                                      "seconds": 1.0, "complete": True}))


def test_recipe_is_part_of_a_runs_identity(tmp_path):
    """A config.json without "recipe" (written before recipes) is a complete, current seed run; an authors run is
    not complete for a seed config and the other way round: the sweep stops and names the recipe."""
    old = tmp_path / "fcnn_run_102"
    _old_config(old)
    seed_cfg = TrainConfig(run_id=102, arch="mlp:4", adv="pgd", epochs=1)
    assert training._status(seed_cfg, tmp_path, force=False) == "done"
    authors_cfg = TrainConfig(run_id=102, arch="mlp:4", adv="pgd", epochs=1, recipe="authors", adv_eps=0.1,
                              adv_steps=10, adv_step_size=0.02)          # the same attack numbers: only the recipe
    with pytest.raises(ToolError, match="different configuration.*recipe: 'seed' there, 'authors' requested"):
        training._status(authors_cfg, tmp_path, force=False)
    new = tmp_path / "fcnn_run_7"
    new.mkdir()
    a7 = TrainConfig(run_id=7, arch="mlp:4", adv="pgd", epochs=1, recipe="authors")
    (new / "config.json").write_text(json.dumps(a7.to_json()))
    (new / "metrics.json").write_text((old / "metrics.json").read_text())
    assert training._status(a7, tmp_path, force=False) == "done"
    with pytest.raises(ToolError, match="recipe: 'authors' there, 'seed' requested"):
        training._status(TrainConfig(run_id=7, arch="mlp:4", adv="pgd", epochs=1, adv_eps=0.15, adv_steps=200,
                                     adv_step_size=0.1), tmp_path, force=False)
    # an epoch checkpoint written before recipes resumes a seed run, never an authors run
    state = {"epoch": 1, "identity": {k: v for k, v in training._identity(seed_cfg).items() if k != "recipe"}}
    torch.save(state, old / "checkpoint.pt")
    assert training.load_checkpoint(old, seed_cfg) is not None
    assert training.load_checkpoint(old, authors_cfg) is None


def test_recipe_defaults_and_choices():
    s, a = TrainConfig(run_id=0, arch="mlp:4"), TrainConfig(run_id=0, arch="mlp:4", recipe="authors")
    assert (s.recipe, s.adv_eps, s.adv_steps, s.adv_step_size) == ("seed", 0.1, 10, 0.02)
    assert (a.adv_eps, a.adv_steps, a.adv_step_size) == (0.15, 200, 0.1)
    assert TrainConfig(run_id=0, arch="mlp:4", recipe="authors", adv_eps=0.05).adv_eps == 0.05
    assert training.robust_attack(a) == (0.15, 10, 0.15 / 5) and training.robust_attack(s) == (0.1, 10, 0.02)
    with pytest.raises(ToolError, match="--recipe must be one of seed, authors, got 'madry'"):
        TrainConfig(run_id=0, arch="mlp:4", recipe="madry")
    with pytest.raises(ToolError, match="'fgsm' is not a setting of --recipe authors"):
        TrainConfig(run_id=0, arch="mlp:4", recipe="authors", adv="fgsm")
    # the authors' recipe costs 2 passes per batch: after PGD, beside FGSM
    cfgs = training.sweep_configs(0, "mlp:4", [0.0], ["none", "pgd"], [0.0], seeds=[0], recipe="authors")
    cfgs += training.sweep_configs(2, "mlp:4", [0.0], ["pgd", "fgsm"], [0.0])
    assert [c.run_id for c in training.longest_first(cfgs)] == [2, 1, 3, 0]


def test_seeds_give_ids_per_seed_in_sweep_order():
    cfgs = training.sweep_configs(100, "mlp:4", [0.0, 1e-3], ["none", "pgd"], [0.0], seeds=[7, 0, 3], epochs=2)
    combos = [(l1, adv) for l1 in (0.0, 1e-3) for adv in ("none", "pgd")]
    assert [(c.run_id, c.seed, c.l1, c.adv) for c in cfgs] == \
        [(100 + 4 * k + i, s, l1, adv) for k, s in enumerate((7, 0, 3)) for i, (l1, adv) in enumerate(combos)]
    with pytest.raises(ToolError, match="--seed and --seeds: give one of them, not both"):
        training.train_sweep(0, "mlp:4", seed=1, seeds=[0, 1])
    for bad, msg in [([], "at least one seed"), ([0, 0], "listed twice"), ([-1], "bad value -1"),
                     ("0,x", "--seeds: bad value 'x'"), ([1.5], "bad value 1.5")]:
        with pytest.raises(ToolError, match=msg):
            training.train_sweep(0, "mlp:4", seeds=bad)


@pytest.mark.slow
def test_seeds_sweep_with_the_authors_recipe(tmp_path, capsys):
    """--seeds 3,5 --recipe authors: ids per seed, each config records its seed and recipe, robust accuracy at
    the authors' eps 0.15; a re-run skips them all."""
    models = tmp_path / "models"
    args = ["-s", "10", "--seeds", "3,5", "--recipe", "authors", "-a", "mlp:3", "--l1", "1e-3", "--adv", "none,pgd",
            "--dropout", "0", "--epochs", "1", "--train-subset", "128", "--models-dir", str(models), "-q"]
    assert main(args) == 0
    want = {10: (3, "none"), 11: (3, "pgd"), 12: (5, "none"), 13: (5, "pgd")}
    assert sorted(p.name for p in models.iterdir()) == [f"fcnn_run_{i}" for i in want]
    for rid, (seed, adv) in want.items():
        conf = json.loads((models / f"fcnn_run_{rid}/config.json").read_text())
        assert (conf["seed"], conf["adv"], conf["recipe"], conf["adv_eps"]) == (seed, adv, "authors", 0.15)
        rob = json.loads((models / f"fcnn_run_{rid}/metrics.json").read_text())["robust_accuracy"]
        assert (rob["eps"], rob["steps"]) == (0.15, 10)
    w10, w12 = ((models / f"fcnn_run_{i}/weights.dat").read_text().splitlines()[2:] for i in (10, 12))
    assert w10 != w12                                          # the seeds differ
    capsys.readouterr()
    assert main(args) == 0
    assert "skipping 4 complete run(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_errors_of_seeds_and_recipe(tmp_path):
    r = _cli("--seed", "1", "--seeds", "0,1", "--models-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: --seed and --seeds: give one of them, not both")
    assert len(r.stderr.strip().splitlines()) == 1
    r = _cli("--seeds", "0,x", "--models-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: --seeds: bad value 'x'")
    r = _cli("--recipe", "authors", "--adv", "none,fgsm", "--models-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: --adv: 'fgsm' is not a setting of --recipe authors")
    assert len(r.stderr.strip().splitlines()) == 1
    r = _cli("--recipe", "madry", "--models-dir", str(tmp_path))
    assert r.returncode == 2 and "argument --recipe: invalid choice: 'madry'" in r.stderr
    assert not any(tmp_path.iterdir())  # nothing half-written
