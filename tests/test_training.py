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
from src.training.train import TrainConfig, adversarial_batch, evaluate, l1_penalty, robust_accuracy, train_run

FILES = {"config.json", "model.pt", "model.onnx", "weights.dat", "metrics.json", "train.log"}
CONFIG_KEYS = {"run_id", "arch", "hidden_sizes", "l1", "adv", "adv_eps", "adv_steps", "adv_step_size", "dropout",
               "epochs", "seed", "lr", "momentum", "batch_size", "lr_step", "lr_gamma", "train_subset", "device",
               "threads", "versions"}


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
    the same function as torch's float64 forward pass on MNIST test images; model.onnx reads back as the same
    net; model.pt alone is refused with a pointer to both."""
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
    with pytest.raises(ToolError, match=r"'1\.weight' \(4x1x7x7, a Conv2d weight\?\).*model\.onnx.*weights\.dat"):
        load_net(d / "model.pt")


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
    assert table[0].split() == ["id", "arch", "l1", "adv", "dropout", "epochs", "status"]
    assert table[1].split()[:5] == ["100", "mlp:4", "0", "none", "0"]
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
    for flag in ("--start", "--arch", "--l1", "--adv", "--dropout", "--epochs", "--seed", "--models-dir", "--workers",
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
