"""White-box PGD + EOT (v1sweep.trial.adversarial): tests that fail when the attack is weak or masked.

Toy models are built here (a 2-pixel MLP whose worst perturbation is found by brute force on a grid,
small CNNs labelled by their own predictions so clean accuracy is 1), so every test runs in seconds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from v1sweep.config import adversarial as spec
from v1sweep.trial.adversarial import Attack, attack_mode, check_gradients, evaluate_attack, input_gradient, pgd
from v1sweep.errors import ConfigError


# ----------------------------------------------------------------------------- toy models
class TwoPixel(nn.Module):
    """A fixed nonlinear 3-class classifier of 2 pixels (input (B, 1, 1, 2)); wiggly boundaries."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(2, 32, generator=g) * 6)
        self.b1 = nn.Parameter(torch.randn(32, generator=g) * 3)
        self.w2 = nn.Parameter(torch.randn(32, 3, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x.flatten(1) * 0.5 + 0.5)  # undo the attack's normalisation: back to [0, 1]
        return torch.tanh(u @ self.w1 + self.b1) @ self.w2


class Noisy(nn.Module):
    """A small CNN with Gaussian noise after its first layer, like the V1 block's `gaussian` noise."""

    def __init__(self, noise: float, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 16, 5, padding=2)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 10))
        self.noise = noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if self.noise:
            h = h + self.noise * torch.randn_like(h)
        return self.head(h)


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                         nn.Flatten(), nn.Linear(128, 10))


def images(n: int = 48, seed: int = 0, size: int = 12) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def own_labels(model: nn.Module, x01: torch.Tensor) -> torch.Tensor:
    """Labels = the model's clean predictions, so clean accuracy is 1 and every drop is the attack's."""
    model.eval()
    with torch.no_grad():
        return model((x01 - 0.5) / 0.5).argmax(1)


def acc(model, x, y, norm="linf", eps=0.03, steps=10, step_size=None, eot=1, restarts=1, seed=0, rs=True, amp=False):
    attack = Attack(norm, eps, steps, spec.resolve_step_size(step_size, eps, steps), eot, restarts, rs)
    return evaluate_attack(model, x, y, attack, seed=seed, batch_size=64, amp=amp)["accuracy"]


# ----------------------------------------------------------------------------- basic properties
def test_eps_zero_gives_clean_accuracy():
    model = cnn()
    x = images()
    y = torch.randint(0, 10, (len(x),), generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        clean = float((model((x - 0.5) / 0.5).argmax(1) == y).float().mean())
    assert 0 < clean < 1
    assert acc(model, x, y, eps=0.0, steps=20) == pytest.approx(clean)
    assert acc(model, x, y, norm="l2", eps=0.0, steps=20) == pytest.approx(clean)


@pytest.mark.parametrize("norm,scale", [("linf", 0.004), ("l2", 0.08)])
def test_accuracy_non_increasing_in_eps_and_steps(norm, scale):
    model = cnn()
    x = images(64)
    y = own_labels(model, x)
    by_eps = [acc(model, x, y, norm=norm, eps=k * scale, steps=10, rs=False) for k in (0, 1, 2, 4, 8)]
    assert by_eps[0] == 1.0 and by_eps[-1] < 0.5, by_eps
    assert all(b <= a for a, b in zip(by_eps, by_eps[1:])), by_eps
    by_steps = [acc(model, x, y, norm=norm, eps=2 * scale, steps=s, step_size=scale / 2, rs=False) for s in (1, 4, 16)]
    assert all(b <= a for a, b in zip(by_steps, by_steps[1:])), by_steps
    assert by_steps[-1] < by_steps[0], by_steps


@pytest.mark.parametrize("norm,eps", [("linf", 0.08), ("l2", 0.1)])
def test_matches_brute_force_on_two_pixels(norm, eps):
    """On 2 pixels the worst perturbation can be searched exhaustively: PGD must find an adversarial
    example wherever the grid does (up to grid resolution), and never claim one that is not."""
    model = TwoPixel()
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(300, 1, 1, 2, generator=g)
    y = own_labels(model, x0)
    # brute force: a 121 x 121 grid over the eps box (disk for l2), clipped to [0, 1]
    t = torch.linspace(-eps, eps, 121)
    d = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    if norm == "l2":
        d = d[d.norm(dim=1) <= eps + 1e-9]
    fooled_bf = []
    with torch.no_grad():
        for i in range(len(x0)):
            pts = (x0[i].reshape(1, 2) + d).clamp(0, 1)
            pred = model((pts.reshape(-1, 1, 1, 2) - 0.5) / 0.5).argmax(1)
            fooled_bf.append(bool((pred != y[i]).any()))
    fooled_bf = torch.tensor(fooled_bf)
    assert 0.1 < fooled_bf.float().mean() < 0.9  # the toy problem is neither trivial nor hopeless
    attack = Attack(norm, eps, 40, eps / 8, 1, 5, True)
    with attack_mode(model, 0, torch.device("cpu")):
        adv, robust = pgd(model, x0, y, attack)
    fooled_pgd = ~robust
    delta = (adv - x0).reshape(len(x0), 2)
    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all() and (adv >= 0).all() and (adv <= 1).all()
    with torch.no_grad():
        pred = model((adv - 0.5) / 0.5).argmax(1)
    assert ((pred != y) == fooled_pgd).all()  # what PGD reports is a real adversarial example
    agree = float((fooled_pgd == fooled_bf).float().mean())
    assert agree >= 0.97, (agree, int(fooled_bf.sum()), int(fooled_pgd.sum()))


def test_removing_eot_never_makes_the_attack_stronger_on_average():
    model = Noisy(noise=1.5)
    x = images(64, seed=2)
    model.eval()
    with torch.no_grad():  # labels: the majority vote over many noise draws
        votes = torch.stack([model((x - 0.5) / 0.5).argmax(1) for _ in range(64)])
    y = votes.mode(0).values
    with_eot = [acc(model, x, y, eps=0.01, steps=8, eot=8, seed=s) for s in range(4)]
    without = [acc(model, x, y, eps=0.01, steps=8, eot=1, seed=s) for s in range(4)]
    assert np.mean(without) >= np.mean(with_eot), (without, with_eot)


def test_eot_gradient_is_the_mean_over_noise_draws():
    """EOT with k samples = the mean of k single-draw gradients taken with the same noise stream."""
    model = Noisy(noise=1.0).eval()
    x = images(4)
    y = torch.zeros(4, dtype=torch.int64)
    torch.manual_seed(5)
    g8 = input_gradient(model, x, y, eot=8)
    torch.manual_seed(5)
    singles = [input_gradient(model, x, y, eot=1) for _ in range(8)]
    assert torch.allclose(g8, torch.stack(singles).mean(0), atol=1e-6)
    assert not torch.allclose(singles[0], singles[1])  # the noise really is fresh per draw


def test_deterministic_given_seed_and_restores_state():
    model = Noisy(noise=1.0)
    model.train()
    x = images(32)
    y = own_labels(Noisy(noise=0.0), x)
    state = torch.random.get_rng_state()
    attack = Attack("linf", 0.01, 5, 0.003, 2, 2, True)
    outs = []
    for seed in (7, 7, 8):
        with attack_mode(model, seed, torch.device("cpu")):
            outs.append(pgd(model, x, y, attack))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert not torch.equal(outs[0][0], outs[2][0])
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is untouched
    assert model.training  # mode restored


def test_random_noise_of_the_same_norm_is_weaker():
    """A black-box sanity check: random corners of the linf box (the largest random perturbation of
    that norm) must hurt less than the white-box attack, or the gradients are not doing the work."""
    model = cnn()
    x = images(64)
    y = own_labels(model, x)
    eps = 0.02
    white = acc(model, x, y, eps=eps, steps=10)
    g = torch.Generator().manual_seed(0)
    hits = torch.ones(len(x), dtype=torch.bool)
    model.eval()
    with torch.no_grad():
        for _ in range(10):  # 10 random tries per image, worst case kept
            noisy = (x + eps * (torch.randint(0, 2, x.shape, generator=g) * 2 - 1)).clamp(0, 1)
            hits &= model((noisy - 0.5) / 0.5).argmax(1) == y
    random_acc = float(hits.float().mean())
    assert white < random_acc - 0.2, (white, random_acc)


def test_bf16_autocast_keeps_gradients():
    model = cnn().eval()
    x = images(16)
    y = own_labels(model, x)
    g32 = input_gradient(model, x, y, amp=False)
    g16 = input_gradient(model, x, y, amp=True)
    assert g16.abs().sum() > 0 and torch.isfinite(g16).all()
    cos = float(nn.functional.cosine_similarity(g32.flatten(), g16.flatten(), dim=0))
    assert cos > 0.9, cos
    assert float((g32.sign() == g16.sign()).float().mean()) > 0.8
    a32 = acc(model, x, y, eps=0.02, steps=10, amp=False)
    a16 = acc(model, x, y, eps=0.02, steps=10, amp=True)
    assert a16 < 0.5 and abs(a16 - a32) <= 0.25, (a16, a32)


def test_gradients_reach_the_input_through_the_v1_block():
    """The real VOne model with stochastic noise: input gradients exist, and EOT averages them."""
    from v1sweep.config import trial as config
    from v1sweep.trial.models import build_model
    from v1sweep.rf import sample

    cfg = config.from_dict({"data": {"image_size": 32}, "model": {"backbone": "tiny", "bottleneck": 8},
                            "frontend": {"n_simple": 8, "n_complex": 8, "ksize": 7, "visual_degrees": 1.0,
                                         "noise": "gaussian"}})
    rf = sample("biological", 8, 8, seed=0, sf_max=cfg.frontend.sf_max)
    model = build_model(cfg, rf, 10)
    x = images(4, size=32)
    y = torch.zeros(4, dtype=torch.int64)
    with attack_mode(model, 0, torch.device("cpu")):
        check_gradients(model, x, y)
        assert not model.vone.noise_frozen
        g1, g2 = input_gradient(model, x, y), input_gradient(model, x, y)
    assert g1.abs().sum() > 0 and not torch.equal(g1, g2)  # noise is fresh during the attack


# ----------------------------------------------------------------------------- bad input
def test_model_without_input_gradients_is_refused():
    class Detached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = cnn()

        def forward(self, x):
            return self.net(torch.round(x * 4) / 4)  # quantising front-end: zero gradient everywhere

    with pytest.raises(ConfigError, match="eval.adversarial.*gradient"):
        check_gradients(Detached(), images(4), torch.zeros(4, dtype=torch.int64))

    class NoGrad(nn.Module):
        def forward(self, x):
            return x.detach().flatten(1)[:, :10] * 1.0

    with pytest.raises(ConfigError, match="eval.adversarial"):
        check_gradients(NoGrad(), images(4), torch.zeros(4, dtype=torch.int64))


@pytest.mark.parametrize("attack,key,what", [
    ({"norm": "l3", "eps": 0.1}, "eval.adversarial[0].norm", "allowed: linf, l2"),
    ({"eps": 1.5}, "eval.adversarial[0].eps", "allowed: [0, 1]"),
    ({"eps": -0.1}, "eval.adversarial[0].eps", "out of range"),
    ({"norm": "l2", "eps": 100.0}, "eval.adversarial[0].eps", "allowed: [0, 55.43]"),
    ({"norm": "linf"}, "eval.adversarial[0].eps", "required"),
    ({"eps": 0.1, "images": 501}, "eval.adversarial[0].images", "allowed: [1, 500]"),
    ({"eps": 0.1, "steps": -1}, "eval.adversarial[0].steps", "out of range"),
    ({"eps": 0.1, "eot": 0}, "eval.adversarial[0].eot", "out of range"),
    ({"eps": 0.1, "restart": 2}, "eval.adversarial[0].restart", "did you mean 'restarts'"),
])
def test_bad_attack_configs_name_the_key(attack, key, what):
    from v1sweep.config import trial as config

    with pytest.raises(ConfigError) as info:
        config.from_dict({"data": {"image_size": 32, "test_size": 500}, "eval": {"adversarial": [attack]}},
                         file="t.yaml")
    text = str(info.value)
    assert text.startswith(f"t.yaml: {key}:") and what in text, text


def test_duplicate_metric_names_and_bad_keyword_are_refused(tmp_path):
    from v1sweep.config import trial as config

    with pytest.raises(ConfigError, match=r"eval.adversarial\[1\].*both log 'adv_acc/linf/0.00392'"):
        config.from_dict({"eval": {"adversarial": [{"eps": 1 / 255}, {"eps": 0.00392, "steps": 3}]}})
    path = tmp_path / "t.yaml"
    path.write_text("eval: {adversarial: yes-please}\n")
    with pytest.raises(ConfigError, match=r"t.yaml: eval.adversarial: 'yes-please' is not allowed; allowed: default"):
        config.load(path)


def test_more_images_than_the_test_set_at_run_time():
    from v1sweep.trial.adversarial import run_attacks
    from v1sweep.config.trial import AttackConfig

    with pytest.raises(ConfigError, match=r"eval.adversarial\[0\].images.*allowed: \[1, 8\]"):
        run_attacks(cnn(), torch.zeros(8, 3, 12, 12, dtype=torch.uint8), torch.zeros(8, dtype=torch.int64),
                    [AttackConfig(eps=0.01, images=9)], stochastic=False, seed=0, batch_size=8,
                    device=torch.device("cpu"))


# ----------------------------------------------------------------------------- config, names, cost
def test_default_keyword_gives_the_published_attacks_and_round_trips():
    from v1sweep.config import trial as config

    cfg = config.from_dict({"eval": {"adversarial": "default"}})
    got = [(a.norm, a.metric, a.steps, a.eot) for a in cfg.eval.adversarial]
    assert got == [("linf", "adv_acc/linf/0.00098", 64, None), ("linf", "adv_acc/linf/0.00392", 64, None),
                   ("l2", "adv_acc/l2/0.15", 64, None), ("l2", "adv_acc/l2/0.6", 64, None)]
    assert config.from_flat(config.to_flat(cfg)) == cfg
    assert config.from_dict({}).eval.adversarial == ()  # off by default: the default trial stays cheap
    assert config.from_dict({"eval": {"adversarial": None}}).eval.adversarial == ()


def test_eps_format_rule():
    assert [spec.format_eps(e) for e in (1 / 1020, 1 / 255, 0.15, 0.6, 0, 1, 8 / 255)] == \
        ["0.00098", "0.00392", "0.15", "0.6", "0", "1", "0.03137"]


def test_cost_counts_passes_per_image():
    from v1sweep.config import trial as config

    cfg = config.from_dict({"frontend": {"noise": "gaussian"}, "eval": {"adversarial": [
        {"eps": 0.01, "steps": 10, "restarts": 2, "images": 100}, {"norm": "l2", "eps": 0.1, "steps": 4, "eot": 3,
                                                                    "images": 50}]}})
    assert cfg.stochastic
    assert spec.attack_cost(cfg.eval.adversarial, cfg.stochastic) == {
        "backward": 10 * 8 * 2 * 100 + 4 * 3 * 50, "forward": 2 * 100 + 50}
    assert spec.attack_cost(cfg.eval.adversarial, False)["backward"] == 10 * 2 * 100 + 4 * 3 * 50


def test_sweep_files_accept_adversarial_metrics():
    from v1sweep.config.sweep_file import _check_final_metric

    _check_final_metric("adv_acc/linf/0.00098", "search.metric")
    with pytest.raises(ConfigError, match="adv_acc/<name>"):
        _check_final_metric("adv_ac", "search.metric")


def test_trial_logs_attack_metrics_and_summary(tmp_path):
    """run_trial end to end on a tiny synthetic trial: an eps-0 attack reproduces the clean accuracy
    of its subset, a real one is no higher, and summary.json records the resolved attacks."""
    from v1sweep.config import trial as config
    from v1sweep.trial.run import run_trial

    cfg = config.from_dict({
        "data": {"image_size": 16, "train_size": 64, "test_size": 48},
        "frontend": {"n_simple": 4, "n_complex": 4, "ksize": 5, "visual_degrees": 0.5},
        "model": {"backbone": "tiny", "bottleneck": 4},
        "train": {"epochs": 1, "batch_size": 32, "device": "cpu", "checkpoint": False},
        "eval": {"corruptions": [], "adversarial": [{"eps": 0.0, "steps": 2, "images": 48},
                                                    {"eps": 0.05, "steps": 3, "images": 48}]}})
    result = run_trial(cfg, tmp_path, log=None)
    assert result.metrics["adv_acc/linf/0"] == pytest.approx(result.metrics["clean_acc"])
    assert result.metrics["adv_acc/linf/0.05"] <= result.metrics["adv_acc/linf/0"]
    rows = result.summary["adversarial"]
    assert [r["metric"] for r in rows] == ["adv_acc/linf/0", "adv_acc/linf/0.05"]
    assert rows[1]["eot"] == 1 and rows[1]["passes_per_image"] == 3 and rows[1]["step_size"] == pytest.approx(
        2.5 * 0.05 / 3)
    assert math.isfinite(rows[1]["wall_s"])


def test_cli_bad_attack_is_one_error_line_and_exit_2(tmp_path, capsys):
    from v1sweep.cli import main as cli_main

    path = tmp_path / "t.yaml"
    path.write_text("data: {image_size: 32, test_size: 100}\neval:\n  adversarial:\n    - {norm: linf, eps: 0.01, images: 101}\n")
    out = tmp_path / "out"
    assert cli_main(["train", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: " in err[0] and "t.yaml: eval.adversarial[0].images" in err[0], err
    assert "allowed: [1, 100]" in err[0] and not out.exists()


def test_attack_modules_import_no_ray_mlflow_optuna_and_names_no_torch():
    import subprocess
    import sys

    code = ("import sys, v1sweep.config.adversarial\n"
            "light = 'torch' not in sys.modules\n"
            "import v1sweep.trial.adversarial, v1sweep.config\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow', 'optuna'))\n"
            "print(light, ','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stdout


def test_per_epoch_attacks_are_off_by_default_and_leave_training_unchanged(tmp_path):
    from v1sweep.config import trial as config
    from v1sweep.trial.run import run_trial

    tree = {"data": {"image_size": 16, "train_size": 64, "test_size": 32},
            "frontend": {"n_simple": 4, "n_complex": 4, "ksize": 5, "visual_degrees": 0.5, "noise": "gaussian"},
            "model": {"backbone": "tiny", "bottleneck": 4},
            "train": {"epochs": 2, "batch_size": 32, "device": "cpu", "checkpoint": False},
            "eval": {"corruptions": [], "adversarial": [{"eps": 0.05, "steps": 1, "eot": 2, "images": 8}]}}
    seen = []
    plain = run_trial(config.from_dict(tree), tmp_path / "a", log=None, on_epoch=lambda e, m: seen.append(dict(m)))
    assert not any(k.startswith("val_adv_acc/") for m in seen for k in m)
    tree["eval"]["adversarial_per_epoch"] = True
    seen.clear()
    per = run_trial(config.from_dict(tree), tmp_path / "b", log=None, on_epoch=lambda e, m: seen.append(dict(m)))
    assert [sorted(k for k in m if k.startswith("val_adv")) for m in seen] == [["val_adv_acc/linf/0.05"]] * 2
    assert [h["train_loss"] for h in per.history] == [h["train_loss"] for h in plain.history]
    assert per.metrics["adv_acc/linf/0.05"] == plain.metrics["adv_acc/linf/0.05"]
    tree["eval"]["adversarial"] = []  # and training is the same as without any attack
    none = run_trial(config.from_dict(tree), tmp_path / "c", log=None)
    assert [h["train_loss"] for h in none.history] == [h["train_loss"] for h in plain.history]
    assert none.metrics["clean_acc"] == plain.metrics["clean_acc"]


def test_dry_run_prints_the_attack_cost(capsys, tmp_path, monkeypatch):
    from pathlib import Path

    from v1sweep.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    smoke = Path(__file__).resolve().parents[1] / "sweeps" / "smoke.yaml"
    assert cli_main(["run", str(smoke), "--dry-run", "--set", "trial.frontend.noise=gaussian"]) == 0
    out = capsys.readouterr().out
    # 4 steps x EOT 8 (noise on) x 1 restart per image, 64 images
    assert "white-box attacks per trial: 2,048 forward+backward image-passes" in out, out
    assert "adv_acc/linf/0.00392: 32 passes/image x 64 images = 2,048" in out
    assert not (tmp_path / "mlflow.db").exists()
