"""DP-SGD and FedAvg's clients run through facekit.train.fit: the same numbers as the hand loops they replaced.

The oracles below are the loops facekit.privacy had before it used ``fit`` (Opacus's ``make_private``
driven by hand, and a client's plain epoch loop); on a tiny model with fixed seeds the package must
reproduce them to float32 round-off.
"""

import copy
import importlib.util
import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from facekit.config import ConfigError
from facekit.privacy import DPConfig, FedConfig, local_train, make_dp_compatible, train_private

pytestmark = pytest.mark.usefixtures("one_thread")
needs_opacus = pytest.mark.skipif(importlib.util.find_spec("opacus") is None,
                                  reason="opacus is not installed (pip install -e '.[deploy]')")


def _tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Flatten(),
                         nn.Linear(4 * 36, 3))


def _data(n=40, seed=3):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 3)


def _dp_by_hand(model, dataset, config):
    """The DP-SGD loop train_private ran before it went through fit (Opacus driven by hand)."""
    from opacus import PrivacyEngine

    torch.manual_seed(config.seed)
    model = make_dp_compatible(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = (torch.optim.Adam(params, lr=config.lr) if config.optimizer == "adam"
                 else torch.optim.SGD(params, lr=config.lr, momentum=config.momentum))
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(config.seed))
    private, optimizer, loader = PrivacyEngine(accountant="rdp").make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=config.noise_multiplier,
        max_grad_norm=config.max_grad_norm, poisson_sampling=True)
    losses, steps = [], 0
    private.train()
    for _ in range(config.epochs):
        total, n = 0.0, 0
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            if len(x) == 0:
                continue
            loss = nn.functional.cross_entropy(private(x), y)
            loss.backward()
            optimizer.step()
            steps += 1
            total, n = total + loss.item() * len(x), n + len(x)
        losses.append(total / max(n, 1))
    return private._module, losses, steps


@needs_opacus
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("optimizer, sigma", [("adam", 1.0), ("sgd", 0.5)])
def test_dp_sgd_through_fit_equals_the_hand_loop(optimizer, sigma):
    config = DPConfig(noise_multiplier=sigma, max_grad_norm=0.5, epochs=3, batch_size=8, lr=0.05,
                      optimizer=optimizer, seed=11, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oracle, losses, steps = _dp_by_hand(_tiny_model(), _data(), config)
    result = train_private(_tiny_model(), _data(), config)
    assert result.steps == steps > 0
    assert [r["train_loss"] for r in result.history] == pytest.approx(losses, rel=1e-6)
    for (name, p), q in zip(oracle.named_parameters(), result.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7, msg=name)
    assert [r["epsilon"] for r in result.history] == sorted(r["epsilon"] for r in result.history)
    assert math.isclose(result.epsilon, result.engine_epsilon, rel_tol=0.05)


def _client_by_hand(model, dataset, *, epochs, lr, batch_size, seed):
    """A FedAvg client's loop before it went through fit: Adam, a generator seeded seed*1000+epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    last = math.nan
    for epoch in range(epochs):
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        total, n = 0.0, 0
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(x), n + len(x)
        last = total / n
    return last


def test_local_train_through_fit_equals_the_hand_loop():
    data = TensorDataset(torch.randn(50, 6, generator=torch.Generator().manual_seed(0)), torch.arange(50) % 4)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    oracle = copy.deepcopy(model)
    expected = _client_by_hand(oracle, data, epochs=3, lr=0.01, batch_size=16, seed=4)
    got = local_train(model, data, epochs=3, lr=0.01, batch_size=16, seed=4)
    assert got == pytest.approx(expected, rel=1e-6)
    for p, q in zip(oracle.parameters(), model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)


def test_privacy_configs_take_optimisers_from_the_one_registry():
    from facekit.train.optim import OPTIMIZERS

    for name in OPTIMIZERS:
        assert DPConfig(optimizer=name).optimizer == FedConfig(optimizer=name).optimizer == name
    with pytest.raises(ConfigError, match="DPConfig.optimizer='rmsprop'.*'adam', 'adamw', 'sgd'"):
        DPConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="TrainConfig.optimizer='lamb'"):
        local_train(nn.Linear(2, 2), TensorDataset(torch.zeros(4, 2), torch.zeros(4).long()), epochs=1, lr=0.1,
                    batch_size=2, optimizer="lamb")
