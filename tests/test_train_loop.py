"""facekit.train's one loop: the optimiser/schedule registry, TrainConfig's checks, the hooks, the dry-run cap."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from facekit.config import ConfigError
from facekit.train import OPTIMIZERS, Callback, TrainConfig, evaluate, fit, lr_at, make_optimizer, predict
from facekit.train import optim

FAST = dict(batch_size=10, lr=1e-2, progress=False)


def data(n=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


def linear(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(4, 2)


# ---------------------------------------------------------------- registry

def test_registry_builds_the_named_optimiser_with_its_settings():
    p = [nn.Parameter(torch.zeros(3))]
    assert type(make_optimizer("adam", p, lr=0.1, weight_decay=0.01)) is torch.optim.Adam
    sgd = make_optimizer("sgd", p, lr=0.2, momentum=0.5, weight_decay=0.1)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.5 and sgd.defaults["weight_decay"] == 0.1
    assert type(make_optimizer("adamw", p, lr=0.1)) is torch.optim.AdamW
    with pytest.raises(ConfigError, match="optimizer='adagrad'.*'adam', 'adamw', 'sgd'"):
        make_optimizer("adagrad", p, lr=0.1)


def test_registered_optimiser_is_used_by_fit_and_names_are_unique(monkeypatch):
    monkeypatch.setattr(optim, "OPTIMIZERS", dict(OPTIMIZERS))  # keep the registry clean for other tests
    monkeypatch.setattr("facekit.train.config.OPTIMIZERS", optim.OPTIMIZERS)
    built = []

    def rmsprop(params, *, lr, weight_decay, momentum):
        built.append(lr)
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, momentum=momentum)

    optim.register_optimizer("rmsprop", rmsprop)
    seen = []

    class Spy(Callback):
        def on_fit_start(self, state):
            seen.append(type(state.optimizer))

    fit(linear(), data(), epochs=1, optimizer="rmsprop", callbacks=[Spy()], **FAST)
    assert built == [1e-2] and seen == [torch.optim.RMSprop]
    with pytest.raises(ValueError, match="already registered"):
        optim.register_optimizer("sgd", rmsprop)


def test_schedule_warmup_then_cosine_by_the_formula():
    import math

    lrs = [lr_at("cosine", 0.3, e, epochs=6, warmup_epochs=2) for e in range(6)]
    by_hand = [0.3 * 1 / 3, 0.3 * 2 / 3] + [0.15 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert lrs == pytest.approx(by_hand, rel=1e-12)
    assert [lr_at("none", 0.3, e, epochs=3) for e in range(3)] == [0.3, 0.3, 0.3]
    with pytest.raises(ConfigError, match="scheduler='step'"):
        lr_at("step", 0.3, 0, epochs=3)


# ---------------------------------------------------------------- TrainConfig checks

@pytest.mark.parametrize("field, value, accepted", [
    ("optimizer", "adagrad", "'adam', 'adamw', 'sgd'"),
    ("scheduler", "linear", "'none', 'cosine'"),
    ("amp", "fp8", "'auto', 'off', 'bf16', 'fp16'"),
    ("epochs", -1, "whole number >= 0"),
    ("epochs", 2.5, "whole number >= 0"),
    ("batch_size", 0, "whole number >= 1"),
    ("warmup_epochs", -2, "whole number >= 0"),
    ("num_workers", -1, "whole number >= 0"),
    ("lr", -1e-3, "finite number >= 0"),
    ("lr", float("nan"), "finite number >= 0"),
    ("weight_decay", "0.1", "finite number >= 0"),
    ("momentum", float("inf"), "finite number >= 0"),
    ("grad_clip", 0.0, "number > 0 or None"),
    ("device", "gpu0", "'auto', 'cpu', 'cuda'"),
])
def test_train_config_names_the_bad_field_and_what_is_accepted(field, value, accepted):
    with pytest.raises(ConfigError, match=rf"TrainConfig\.{field}={value!r}".replace("(", r"\(")) as err:
        TrainConfig(**{field: value})
    assert accepted in str(err.value)


def test_train_config_accepts_numpy_numbers_and_torch_devices():
    import numpy as np

    cfg = TrainConfig(epochs=np.int64(3), lr=np.float32(0.01), device=torch.device("cpu"))
    assert cfg.epochs == 3 and fit(linear(), data(), config=cfg, **FAST).records[-1]["epoch"] == 3


# ---------------------------------------------------------------- hooks

def test_on_fit_start_may_wrap_model_optimizer_and_data():
    calls = []

    class Wrap(Callback):
        """Swaps in a wrapped model, a fresh SGD and an epoch -> batches function, as MakePrivate does."""

        def on_fit_start(self, state):
            inner = state.model
            state.model = nn.Sequential(inner)
            state.optimizer = torch.optim.SGD(inner.parameters(), lr=0.0)  # lr is set by fit each epoch
            base = state.train
            state.train = lambda epoch: calls.append(epoch) or DataLoader(base, batch_size=25)

        def on_epoch_end(self, state):
            state.history.records[-1]["wrapped"] = isinstance(state.model, nn.Sequential)

    model = linear()
    before = model.weight.detach().clone()
    hist = fit(model, data(), epochs=2, callbacks=[Wrap()], **FAST)
    assert calls == [0, 1] and hist["wrapped"] == [True, True]
    assert not torch.equal(before, model.weight)  # the wrapped optimiser trained the caller's parameters


def test_train_may_be_a_function_of_the_epoch():
    seen = []

    def batches(epoch):
        seen.append(epoch)
        return DataLoader(data(), batch_size=20)

    hist = fit(linear(), batches, epochs=3, **FAST)
    assert seen == [0, 1, 2] and len(hist.records) == 3
    with pytest.raises(TypeError, match="Dataset or DataLoader"):
        fit(linear(), [1, 2, 3], epochs=1, progress=False)


def test_empty_batches_take_no_step():
    class Steps(Callback):
        def on_fit_end(self, state):
            self.steps = state.steps

    empty = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    full = (torch.randn(5, 4), torch.ones(5, dtype=torch.long))
    spy = Steps()
    fit(linear(), lambda epoch: [empty, full, empty], epochs=2, callbacks=[spy], **FAST)
    assert spy.steps == 2


# ---------------------------------------------------------------- the dry-run cap

class CountSteps(Callback):
    def __init__(self):
        self.per_epoch, self._last = [], 0

    def on_epoch_end(self, state):
        self.per_epoch.append(state.steps - self._last)
        self._last = state.steps


def test_fit_honours_the_dry_run_cap(monkeypatch):
    monkeypatch.setenv("FACEKIT_MAX_STEPS", "3")
    counter = CountSteps()
    hist = fit(linear(), data(), data(seed=1), epochs=5, callbacks=[counter], **FAST)  # 10 steps an epoch uncapped
    assert [r["epoch"] for r in hist.records] == [1, 2, 3] and counter.per_epoch == [3, 3, 3]
    monkeypatch.delenv("FACEKIT_MAX_STEPS")
    counter = CountSteps()
    assert len(fit(linear(), data(), epochs=2, callbacks=[counter], **FAST).records) == 2
    assert counter.per_epoch == [10, 10]


def test_evaluate_and_predict_honour_the_dry_run_cap(monkeypatch):
    batches = []

    def metric(out, y):
        batches.append(len(y))
        return 0.0

    monkeypatch.setenv("FACEKIT_MAX_STEPS", "2")
    evaluate(linear(), data(), metrics={"count": metric}, batch_size=10, device="cpu")
    logits, y = predict(linear(), data(), batch_size=10, device="cpu")
    assert batches == [10, 10] and logits.shape == (20, 2) and y.shape == (20,)
    monkeypatch.setenv("FACEKIT_MAX_STEPS", "0")
    with pytest.raises(ConfigError, match="FACEKIT_MAX_STEPS"):
        fit(linear(), data(), epochs=1, **FAST)


# ---------------------------------------------------------------- per-step hooks

def test_step_hooks_reproduce_a_hand_loop_with_per_step_warmup():
    """A step-counted loop with a per-step warm-up and a per-step loss curve, written by hand, and the same
    through fit: a function of the epoch gives the batches, two callbacks set the rate and read the loss."""
    steps, warmup, peak = 12, 4, 0.05

    def batches(gen):
        for _ in range(steps):
            x = torch.randn(16, 4, generator=gen)
            yield x, (x[:, 1] > 0).long()

    def rate(step):
        return peak * min(1.0, (step + 1) / warmup)

    by_hand, curve_by_hand = linear(3), []
    opt = torch.optim.AdamW(by_hand.parameters(), lr=peak, weight_decay=0.01)
    for step, (x, y) in enumerate(batches(torch.Generator().manual_seed(9))):
        for group in opt.param_groups:
            group["lr"] = rate(step)
        loss = nn.functional.cross_entropy(by_hand(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve_by_hand.append(loss.item())

    class Warmup(Callback):
        def on_step_start(self, state):
            for group in state.optimizer.param_groups:
                group["lr"] = rate(state.steps)

    class Curve(Callback):
        def __init__(self):
            self.losses = []

        def on_step_end(self, state):
            self.losses.append(state.last_loss)

    model, curve = linear(3), Curve()
    gen = torch.Generator().manual_seed(9)
    fit(model, lambda epoch: batches(gen), epochs=1, optimizer="adamw", lr=peak, weight_decay=0.01, metrics={},
        callbacks=[Warmup(), curve], progress=False)
    assert curve.losses == pytest.approx(curve_by_hand, rel=1e-6) and len(curve.losses) == steps
    for p, q in zip(by_hand.parameters(), model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
