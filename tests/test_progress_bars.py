"""Progress bars of `v1sweep train`: a tqdm bar within each epoch (loss, images/s, ETA) and over the
corruption evaluation on a terminal; nothing extra off a terminal (the per-epoch log lines remain)."""
from __future__ import annotations

import io
import sys
import time

import torch
from torch import nn

from v1sweep.trial import evaluation as evaluation
from v1sweep.trial import training as training


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def slow_loader(batches: int = 4, delay: float = 0.3):
    for i in range(batches):
        time.sleep(delay)  # long enough for the bar's 0.5 s update interval
        g = torch.Generator().manual_seed(i)
        yield torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)


class Sized:
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        return slow_loader(self.n)


def _epoch():
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return training.train_one_epoch(model, Sized(4), opt, device=torch.device("cpu"), amp=False,
                                    channels_last=False, max_batches=None, epoch=2, epochs=5)


def test_epoch_bar_on_a_terminal(monkeypatch):
    out, err = FakeTTY(), FakeTTY()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    result = _epoch()
    text = err.getvalue()
    assert result["images"] == 32
    assert "epoch 2/5" in text and "/4" in text and "img/s" in text and "loss " in text
    assert "<" in text  # tqdm's elapsed<remaining (the ETA)
    assert out.getvalue() == ""  # the bar stays on stderr; stdout keeps the plain epoch lines


def test_no_bar_when_stdout_is_not_a_terminal(monkeypatch):
    out, err = io.StringIO(), FakeTTY()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    _epoch()
    assert err.getvalue() == "" and out.getvalue() == ""


class TinySource:
    """An evaluation source with two (corruption, severity) sets of 4 images."""

    def pairs(self):
        return [("fog", 1), ("fog", 2)]

    def load(self, name, severity):
        time.sleep(0.2)  # past tqdm's minimum refresh interval
        images = torch.full((4, 3, 8, 8), 10 * severity, dtype=torch.uint8)
        return images, torch.zeros(4, dtype=torch.int64)


def test_corruption_evaluation_bar(monkeypatch):
    out, err = FakeTTY(), FakeTTY()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    rows = evaluation.evaluate_corruptions(model, TinySource(), batch_size=4)
    assert [(r["corruption"], r["severity"]) for r in rows] == [("fog", 1), ("fog", 2)]
    assert "corruptions" in err.getvalue() and "1/2" in err.getvalue() and "fog/1" in err.getvalue()
