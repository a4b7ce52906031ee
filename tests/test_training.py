"""Training loop: learning, schedules against their formulas, checkpoint/resume, divergence."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from v1sweep.config.trial import TrainConfig, from_dict
from v1sweep.errors import ConfigError, TrialFailed
from v1sweep.trial.training import config_fingerprint, fit, load_checkpoint, make_optimizer, make_scheduler


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n: int = 400, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearly separable toy images: class means far apart relative to the noise."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, 3, 6, 6, generator=g) * 1.5
    labels = torch.randint(0, classes, (n,), generator=g)
    images = means[labels] + torch.randn(n, 3, 6, 6, generator=g)
    return images, labels


class EpochLoader:
    """Shuffles with a generator reseeded from (seed, epoch), like the project's BatchLoader."""

    def __init__(self, x, y, batch_size=32, seed=0):
        self.x, self.y, self.batch_size, self.seed, self.epoch = x, y, batch_size, seed, 0
        self.yielded = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(len(self.x), generator=g)
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            self.yielded += 1
            yield self.x[idx], self.y[idx]


class StatefulLoader:
    """Shuffles with one generator advanced across epochs: resume needs its saved state."""

    def __init__(self, x, y, batch_size=32, seed=0):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.gen = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=self.gen)
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


def toy_model(classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # Dropout draws from the global RNG: resume must restore it to follow the same curve.
    return nn.Sequential(nn.Flatten(), nn.Linear(108, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, classes))


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="constant",
                device="cpu", seed=0)
    base.update(kw)
    return from_dict({"train": base}).train


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_fit_learns_and_reports_each_epoch():
    x, y = blobs()
    x, y, xt, yt = x[:300], y[:300], x[300:], y[300:]
    model = toy_model()
    seen = []
    history = fit(model, EpochLoader(x, y), config=cfg(epochs=5), val_fn=lambda m: accuracy(m, xt, yt),
                  on_epoch=lambda e, m: seen.append((e, m)), log=None)
    assert [e for e, _ in seen] == [1, 2, 3, 4, 5]
    for _, metrics in seen:
        assert {"train_loss", "train_acc", "val_acc", "lr", "images_per_s"} <= set(metrics)
        assert metrics["images_per_s"] > 0
    assert len(history) == 5 and history[-1]["epoch"] == 5
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc"] > 0.9  # chance is 0.25
    assert model.training  # fit leaves the model in training mode


def test_train_loss_and_acc_match_a_direct_computation():
    """With lr 0 the weights never move, so the epoch metrics equal a direct evaluation."""
    x, y = blobs(n=96)
    model = nn.Sequential(nn.Flatten(), nn.Linear(108, 4))
    torch.manual_seed(3)
    model[1].reset_parameters()
    with torch.no_grad():
        logits = model(x)
        want_loss = nn.functional.cross_entropy(logits, y).item()
        want_acc = (logits.argmax(1) == y).float().mean().item()
    history = fit(model, EpochLoader(x, y, batch_size=20), config=cfg(epochs=1, lr=0.0, momentum=0.0,
                  weight_decay=0.0), log=None)
    assert history[0]["train_loss"] == pytest.approx(want_loss, rel=1e-5)
    assert history[0]["train_acc"] == pytest.approx(want_acc)


def test_max_batches_caps_each_epoch():
    x, y = blobs(n=320)
    loader = EpochLoader(x, y, batch_size=32)
    fit(toy_model(), loader, config=cfg(epochs=2, max_batches=3), log=None)
    assert loader.yielded == 6


# ----------------------------------------------------------------------------- schedules
def lrs_of(config: TrainConfig, vals=None, key: str = "val_acc") -> list[float]:
    """LR per epoch of `fit` when the validation returns `vals` (one per epoch) under `key`."""
    x, y = blobs(n=64)
    val_iter = iter(vals) if vals is not None else None
    history = fit(toy_model(), EpochLoader(x, y), config=config,
                  val_fn=(lambda m: {key: next(val_iter)}) if val_iter else None, log=None)
    return [h["lr"] for h in history]


def plateau_reference(vals, lr, factor, patience, threshold, mode):
    """The plateau schedule written out (relative threshold): an epoch improves when it beats the
    best so far by more than `threshold` of it; once more than `patience` epochs in a row fail to
    improve, the LR is multiplied by `factor` and the count restarts."""
    best, bad, out = (math.inf if mode == "min" else -math.inf), 0, []
    for v in vals:
        out.append(lr)
        better = v < best * (1 - threshold) if mode == "min" else v > best * (1 + threshold)
        if better:
            best, bad = v, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = lr * factor, 0
    return out


def torch_plateau_trace(vals, lr, **kw):
    """torch's ReduceLROnPlateau configured here, stepped once per epoch: the LR used in each epoch."""
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    out = []
    for v in vals:
        out.append(opt.param_groups[0]["lr"])
        sched.step(v)
    return out


# Validation losses that keep creeping down by < 1 % an epoch: under the study's 1 % relative
# threshold these are plateau epochs; torch's default threshold (1e-4) would count them as progress.
CREEPING_LOSSES = [2.0, 1.5, 1.499, 1.495, 1.49, 1.488, 1.487, 1.486,
                   1.2, 1.199, 1.198, 1.197, 1.196, 1.195, 1.194, 1.193]


def test_study_plateau_steps_on_validation_loss_with_one_percent_threshold():
    config = from_dict({"train": {"preset": "study", "epochs": len(CREEPING_LOSSES), "batch_size": 32,
                                  "device": "cpu"}}).train
    got = lrs_of(config, CREEPING_LOSSES, key="val_loss")
    want = plateau_reference(CREEPING_LOSSES, 0.1, 0.1, 5, 0.01, "min")
    assert got == pytest.approx(want)
    assert got == pytest.approx(torch_plateau_trace(CREEPING_LOSSES, 0.1, mode="min", factor=0.1, patience=5,
                                                    threshold=0.01, threshold_mode="rel"))
    # 1.499 .. 1.486 are within 1 % of the best (1.5): epoch 8 is the 6th in a row without progress.
    assert got[:8] == pytest.approx([0.1] * 8) and got[8:15] == pytest.approx([0.01] * 7)
    assert got[15] == pytest.approx(0.001)
    # torch's default threshold would not have reduced the LR at all on this trace.
    assert torch_plateau_trace(CREEPING_LOSSES, 0.1, mode="min", factor=0.1, patience=5) == pytest.approx(
        [0.1] * len(CREEPING_LOSSES))


def test_plateau_on_validation_accuracy_is_an_option():
    vals = [0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6]
    config = cfg(epochs=10, lr=0.1, schedule="plateau", plateau_metric="val_acc", plateau_factor=0.1,
                 plateau_patience=2, plateau_threshold=1e-4)
    got = lrs_of(config, vals)
    assert got == pytest.approx(plateau_reference(vals, 0.1, 0.1, 2, 1e-4, "max"))
    assert got[:4] == pytest.approx([0.1] * 4) and got[4] == pytest.approx(0.01)  # 3 flat epochs > patience 2
    improving = [0.1 * i for i in range(1, 8)]
    assert lrs_of(cfg(epochs=7, lr=0.1, schedule="plateau", plateau_metric="val_acc", plateau_patience=1),
                  improving) == pytest.approx([0.1] * 7)


def test_plateau_on_loss_refuses_a_validation_without_loss():
    with pytest.raises(ConfigError, match="plateau_metric"):
        lrs_of(cfg(epochs=2, schedule="plateau"), [0.5, 0.5], key="val_acc")


def test_plateau_without_validation_watches_the_training_loss():
    x, y = blobs(n=64)
    history = fit(toy_model(), EpochLoader(x, y), config=cfg(epochs=3, schedule="plateau"), log=None)
    assert len(history) == 3  # train_loss stands in for val_loss


def test_cosine_and_step_follow_their_formulas():
    epochs = 7
    got = lrs_of(cfg(epochs=epochs, lr=0.2, schedule="cosine"))
    want = [0.2 * (1 + math.cos(math.pi * (e - 1) / epochs)) / 2 for e in range(1, epochs + 1)]
    assert got == pytest.approx(want, rel=1e-6)
    got = lrs_of(cfg(epochs=7, lr=0.2, schedule="step", step_size=3, step_gamma=0.5))
    assert got == pytest.approx([0.2 * 0.5 ** ((e - 1) // 3) for e in range(1, 8)])
    assert lrs_of(cfg(epochs=3, lr=0.2, schedule="constant")) == pytest.approx([0.2] * 3)


def test_study_preset_is_the_published_recipe():
    train = from_dict({"train": {"preset": "study"}}).train
    assert (train.epochs, train.batch_size, train.lr, train.momentum, train.weight_decay) == (60, 128, 0.1, 0.9, 5e-4)
    opt = make_optimizer(nn.Linear(2, 2), train)
    sched = make_scheduler(opt, train)
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert (sched.factor, sched.patience, sched.mode, sched.threshold, sched.threshold_mode) == (
        0.1, 5, "min", 0.01, "rel")
    assert train.plateau_metric == "val_loss"


# ----------------------------------------------------------------------------- checkpoint / resume
class Interrupt(Exception):
    pass


def stop_after(n):
    def on_epoch(epoch, metrics):
        if epoch == n:
            raise Interrupt
    return on_epoch


@pytest.mark.parametrize("loader_cls", [EpochLoader, StatefulLoader])
@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_resume_after_interruption_follows_the_same_curve(tmp_path, loader_cls, schedule):
    x, y = blobs(n=200)
    xt, yt = blobs(n=200)
    config = cfg(epochs=4, schedule=schedule, plateau_patience=0, lr=0.1)

    def val(m):
        m.eval()
        with torch.no_grad():
            loss = nn.functional.cross_entropy(m(xt[:60]), yt[:60]).item()
        return {"val_acc": accuracy(m, xt[:60], yt[:60]), "val_loss": loss}

    straight_model = toy_model()
    straight = fit(straight_model, loader_cls(x, y), config=config, val_fn=val, log=None)

    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(Interrupt):
        fit(toy_model(), loader_cls(x, y), config=config, val_fn=val, checkpoint_path=ckpt,
            on_epoch=stop_after(2), log=None)
    # A new process would build the model again from its seed and a fresh loader.
    torch.manual_seed(12345)  # disturb the global RNG: resume must restore it
    resumed_model = toy_model()
    resumed = fit(resumed_model, loader_cls(x, y), config=config, val_fn=val, checkpoint_path=ckpt,
                  log=None)
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight, resumed):
        for key in ("train_loss", "train_acc", "val_acc", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (key, a["epoch"])
    for p, q in zip(straight_model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(p, q)


def test_extending_a_finished_run_equals_a_longer_run(tmp_path):
    x, y = blobs(n=200)
    ckpt = tmp_path / "c.pt"
    straight = fit(toy_model(), EpochLoader(x, y), config=cfg(epochs=4, schedule="step", step_size=1), log=None)
    fit(toy_model(), EpochLoader(x, y), config=cfg(epochs=2, schedule="step", step_size=1), checkpoint_path=ckpt,
        log=None)
    extended = fit(toy_model(), EpochLoader(x, y), config=cfg(epochs=4, schedule="step", step_size=1),
                   checkpoint_path=ckpt, log=None)
    assert [h["train_loss"] for h in extended] == pytest.approx([h["train_loss"] for h in straight], rel=1e-6)


def test_finished_checkpoint_is_not_retrained(tmp_path):
    x, y = blobs(n=64)
    ckpt = tmp_path / "c.pt"
    first = fit(toy_model(), EpochLoader(x, y), config=cfg(epochs=2), checkpoint_path=ckpt, log=None)
    loader = EpochLoader(x, y)
    model = toy_model(seed=7)
    again = fit(model, loader, config=cfg(epochs=2), checkpoint_path=ckpt, log=None)
    assert loader.yielded == 0
    assert [h["train_loss"] for h in again] == [h["train_loss"] for h in first]
    state = torch.load(ckpt, weights_only=True)
    torch.testing.assert_close(model.state_dict()["1.weight"], state["model"]["1.weight"])


def test_checkpoint_loads_with_weights_only_and_has_the_parts(tmp_path):
    x, y = blobs(n=64)
    ckpt = tmp_path / "c.pt"
    config = cfg(epochs=1, schedule="plateau")
    fit(toy_model(), StatefulLoader(x, y), config=config, checkpoint_path=ckpt, log=None)
    state = torch.load(ckpt, weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "history", "rng", "fingerprint", "loader"} <= set(state)
    assert state["epoch"] == 1 and state["fingerprint"] == config_fingerprint(config)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_checkpoint_from_another_config_is_refused(tmp_path):
    x, y = blobs(n=64)
    ckpt = tmp_path / "c.pt"
    fit(toy_model(), EpochLoader(x, y), config=cfg(epochs=1, lr=0.05), checkpoint_path=ckpt, log=None)
    with pytest.raises(ConfigError, match="checkpoint from another config"):
        fit(toy_model(), EpochLoader(x, y), config=cfg(epochs=2, lr=0.01), checkpoint_path=ckpt, log=None)
    with pytest.raises(ConfigError, match="checkpoint from another config"):
        load_checkpoint(ckpt, fingerprint="0" * 16)


def test_fingerprint_ignores_device_and_epochs_but_not_the_recipe():
    assert config_fingerprint(cfg(epochs=3)) == config_fingerprint(cfg(epochs=9, device="cuda"))
    assert config_fingerprint(cfg(lr=0.1)) != config_fingerprint(cfg(lr=0.2))
    # the cosine period depends on the epoch count
    assert config_fingerprint(cfg(schedule="cosine", epochs=3)) != config_fingerprint(cfg(schedule="cosine", epochs=9))
    a = from_dict({"train": {"epochs": 2}, "eval": {"max_images": 10}, "name": "a"})
    b = from_dict({"train": {"epochs": 5}, "eval": {"max_images": 20}, "name": "b"})
    c = from_dict({"train": {"epochs": 2}, "rf": {"seed": 3}})
    assert config_fingerprint(a) == config_fingerprint(b)
    assert config_fingerprint(a) != config_fingerprint(c)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"not a checkpoint")
    x, y = blobs(n=64)
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        fit(toy_model(), EpochLoader(x, y), config=cfg(epochs=1), checkpoint_path=ckpt, log=None)


# ----------------------------------------------------------------------------- divergence
class NaNAfter(nn.Module):
    def __init__(self, after: int):
        super().__init__()
        self.lin = nn.Linear(108, 4)
        self.calls, self.after = 0, after

    def forward(self, x):
        self.calls += 1
        out = self.lin(x.flatten(1))
        return out * float("nan") if self.calls > self.after else out


def test_nan_output_stops_with_diverged():
    x, y = blobs(n=128)
    with pytest.raises(TrialFailed) as info:
        fit(NaNAfter(after=5), EpochLoader(x, y), config=cfg(epochs=3), log=None)
    assert info.value.reason == "diverged"
    assert "epoch 2" in str(info.value)  # 4 batches per epoch: batch 6 is in epoch 2


def test_huge_learning_rate_diverges():
    x, y = blobs(n=128)
    x = x * 1e4
    with pytest.raises(TrialFailed) as info:
        fit(toy_model(), EpochLoader(x, y), config=cfg(epochs=5, lr=10.0, momentum=0.99), log=None)
    assert info.value.reason == "diverged"
