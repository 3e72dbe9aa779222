"""facekit.privacy: AES-GCM and random-projection templates, DP accounting and clipping, FedAvg, anonymisation."""

import copy
import importlib.util
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from facekit.config import ConfigError
from facekit.privacy import (DPConfig, EncryptedTemplate, FedConfig, RandomProjection, TemplateCipher,
                             TemplateIntegrityError, accountant_epsilon_matches, anonymise, anonymise_faces,
                             clipped_noisy_gradient, epsilon_for, fedavg, gaussian_epsilon, hamming_similarity,
                             local_train, make_dp_compatible, split_by_identity, split_iid, train_private,
                             weighted_average)

pytestmark = pytest.mark.usefixtures("one_thread")
needs_opacus = pytest.mark.skipif(importlib.util.find_spec("opacus") is None,
                                  reason="opacus is not installed (pip install -e '.[deploy]')")


# ---------------------------------------------------------------- AES-GCM templates

@pytest.fixture
def cipher():
    pytest.importorskip("cryptography", reason="cryptography is not installed (the deploy extra)")
    return TemplateCipher(bytes(range(32)))


def test_encrypted_template_round_trips_exactly(cipher):
    e = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    t = cipher.encrypt(e, "alice")
    assert len(t.nonce) == 12 and len(t.ciphertext) == 128 * 4 + 16
    back = cipher.decrypt(EncryptedTemplate.from_bytes(t.to_bytes()), "alice")
    assert back.dtype == np.float32 and np.array_equal(back, e)
    assert cipher.encrypt(e, "alice").nonce != t.nonce, "a fresh random nonce per encryption"


def test_known_answer_against_aesgcm_directly(cipher):
    """Our bytes are AESGCM(key).encrypt(nonce, float32 LE bytes, associated data) and nothing else."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    e = np.arange(4, dtype=np.float32)
    nonce = b"\x00" * 12
    ours = cipher.encrypt(e, "bob", nonce=nonce).ciphertext
    theirs = AESGCM(bytes(range(32))).encrypt(nonce, e.astype("<f4").tobytes(), b"facekit-template-v1|4|bob")
    assert ours == theirs


@pytest.mark.parametrize("where", ["nonce", "dim", "ciphertext", "tag"])
def test_tampering_fails_loudly(cipher, where):
    blob = bytearray(cipher.encrypt(np.ones(8, np.float32), "alice").to_bytes())
    at = {"nonce": 3, "dim": 15, "ciphertext": 20, "tag": len(blob) - 1}[where]
    blob[at] ^= 0x01
    with pytest.raises(TemplateIntegrityError, match="alice"):
        cipher.decrypt(EncryptedTemplate.from_bytes(bytes(blob)), "alice")


def test_wrong_person_or_key_fails(cipher):
    t = cipher.encrypt(np.ones(8, np.float32), "alice")
    with pytest.raises(TemplateIntegrityError):
        cipher.decrypt(t, "mallory")
    with pytest.raises(TemplateIntegrityError):
        TemplateCipher(TemplateCipher.generate_key()).decrypt(t, "alice")
    with pytest.raises(ConfigError, match="32 bytes"):
        TemplateCipher(b"short")


# ---------------------------------------------------------------- random-projection templates

def test_random_projection_same_seed_reproducible_and_reissue_differs():
    e = np.random.default_rng(1).standard_normal((5, 16))
    a, b = RandomProjection(16, 64, seed=3), RandomProjection(16, 64, seed=3)
    assert np.array_equal(a.protect(e), b.protect(e))
    assert not np.array_equal(a.protect(e), a.reissue(4).protect(e))
    with pytest.raises(ConfigError):
        a.reissue(3)
    with pytest.raises(ConfigError, match="width"):
        a.protect(np.ones((2, 8)))


def test_random_projection_estimates_angle_and_different_seeds_are_unlinkable():
    rng = np.random.default_rng(2)
    people = rng.standard_normal((200, 32))
    probes = people + 0.3 * rng.standard_normal((200, 32))  # the same people, seen again
    p1, p2 = RandomProjection(32, 2048, seed=1), RandomProjection(32, 2048, seed=2)
    cos = (people * probes).sum(1) / np.linalg.norm(people, axis=1) / np.linalg.norm(probes, axis=1)
    same_seed = hamming_similarity(p1.protect(people), p1.protect(probes))
    np.testing.assert_allclose(same_seed, 1 - np.arccos(cos) / np.pi, atol=0.05)  # Charikar's estimate
    cross = hamming_similarity(p1.protect(people), p2.protect(probes))  # same person, two seeds
    strangers = hamming_similarity(p1.protect(people), p1.protect(np.roll(probes, 1, axis=0)))
    assert abs(cross.mean() - 0.5) < 0.01
    assert same_seed.min() > cross.max() and same_seed.mean() > strangers.mean() + 0.2


def test_hamming_similarity_by_hand():
    assert hamming_similarity([[1, 0, 1, 1]], [[1, 1, 1, 0]]).tolist() == [0.5]


# ---------------------------------------------------------------- DP accounting and clipping

@needs_opacus
def test_epsilon_matches_opacus_documented_test_value():
    # opacus/tests/accountants_test.py::test_rdp_accountant: sigma 1.5, q 0.04, int(90 / 0.04) steps -> 7.32911117143
    assert epsilon_for(1.5, 0.04, int(90 / 0.04), 1e-5) == pytest.approx(7.32911117143, abs=1e-8)


@needs_opacus
def test_epsilon_agrees_with_stepping_the_accountant_and_the_analysis_api():
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    for _ in range(300):
        acc.step(noise_multiplier=1.1, sample_rate=0.01)
    ours, analysis = accountant_epsilon_matches(1.1, 0.01, 300, 1e-5)
    assert ours == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-12)
    assert ours == pytest.approx(analysis, rel=1e-12)
    assert epsilon_for(0.0, 0.01, 300, 1e-5) == math.inf


@needs_opacus
def test_full_batch_gaussian_epsilon_from_the_formula_matches_opacus():
    for sigma, steps in [(1.0, 1), (3.0, 10), (8.0, 100)]:
        assert gaussian_epsilon(sigma, steps, 1e-5) == pytest.approx(epsilon_for(sigma, 1.0, steps, 1e-5), rel=1e-9)


def test_dp_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="noise_multiplier"):
        DPConfig(noise_multiplier=-1)
    with pytest.raises(ConfigError, match="optimizer"):
        DPConfig(optimizer="rmsprop")


def _tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Flatten(),
                         nn.Linear(4 * 36, 3))


@needs_opacus
def test_make_dp_compatible_replaces_batchnorm():
    fixed = make_dp_compatible(_tiny_model())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in fixed.modules())
    assert not any(getattr(m, "inplace", False) for m in fixed.modules())


@needs_opacus
@pytest.mark.filterwarnings("ignore:Full backward hook")
def test_clipping_by_hand_matches_a_naive_loop_and_opacus():
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    model = make_dp_compatible(_tiny_model())
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    ours = clipped_noisy_gradient(model, F.cross_entropy, x, y, max_grad_norm=0.1, noise_multiplier=0.0)
    naive = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in range(len(x)):  # one example at a time: its gradient, clipped, summed
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters()))
        for k, p in model.named_parameters():
            naive[k] += p.grad * min(1.0, 0.1 / (norm.item() + 1e-6)) / len(x)
    gsm = GradSampleModule(copy.deepcopy(model))
    opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.0), noise_multiplier=0.0, max_grad_norm=0.1,
                      expected_batch_size=len(x))
    F.cross_entropy(gsm(x), y).backward()
    opt.pre_step()
    for k, p in gsm.named_parameters():
        name = k.removeprefix("_module.")
        torch.testing.assert_close(ours[name], naive[name], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ours[name], p.grad, atol=1e-6, rtol=1e-5)


@needs_opacus
def test_train_private_runs_and_reports_epsilon():
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 3
    r = train_private(_tiny_model(), TensorDataset(x, y),
                      DPConfig(noise_multiplier=1.0, epochs=2, batch_size=10, device="cpu"))
    assert r.delta == pytest.approx(1 / 40) and r.sample_rate == pytest.approx(10 / 40)
    assert r.epsilon == pytest.approx(epsilon_for(1.0, 0.25, 8, 1 / 40))
    assert 0 < r.epsilon < math.inf and len(r.history) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in r.model.modules())


# ---------------------------------------------------------------- FedAvg

def test_weighted_average_by_hand_and_integer_buffers():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    out = weighted_average([a, b], [3, 1])
    torch.testing.assert_close(out["w"], torch.tensor([1.5, 3.0]))
    assert out["n"].item() == 5
    with pytest.raises(ValueError):
        weighted_average([a, b], [1])


def test_fedavg_of_identical_clients_equals_centralised_training():
    torch.manual_seed(0)
    x, y = torch.randn(24, 4), torch.arange(24) % 3
    data = TensorDataset(torch.cat([x, x, x]), torch.cat([y, y, y]))  # three clients holding the same examples
    model = nn.Linear(4, 3)
    cfg = FedConfig(rounds=3, local_epochs=2, lr=0.1, optimizer="sgd", momentum=0.0, device="cpu")
    fed = fedavg(model, data, [range(0, 24), range(24, 48), range(48, 72)], cfg, full_batch=True).model
    central = copy.deepcopy(model)  # 3 rounds x 2 local epochs = 6 full-batch steps on the same data
    local_train(central, TensorDataset(x, y), epochs=6, lr=0.1, batch_size=24, optimizer="sgd", momentum=0.0,
                full_batch=True)
    for p, q in zip(central.parameters(), fed.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)


def test_fedsgd_equals_one_centralised_gradient_step():
    torch.manual_seed(1)
    x, y = torch.randn(30, 5), torch.arange(30) % 3
    model = nn.Linear(5, 3)
    central = copy.deepcopy(model)
    local_train(central, TensorDataset(x, y), epochs=1, lr=0.3, batch_size=30, optimizer="sgd", momentum=0.0,
                full_batch=True)
    fed = fedavg(model, TensorDataset(x, y), [range(0, 4), range(4, 17), range(17, 30)],
                 FedConfig(rounds=1, lr=0.3, optimizer="sgd", momentum=0.0, device="cpu"), full_batch=True).model
    for p, q in zip(central.parameters(), fed.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)


def test_splits():
    y = np.repeat(np.arange(10), 3)
    parts = split_by_identity(y, 3, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(30))
    people = [set(y[p].tolist()) for p in parts]
    assert all(not (people[i] & people[j]) for i in range(3) for j in range(i + 1, 3))
    iid = split_iid(30, 4, seed=0)
    assert sorted(np.concatenate(iid).tolist()) == list(range(30)) and {len(p) for p in iid} <= {7, 8}
    with pytest.raises(ConfigError, match="num_clients"):
        split_by_identity(y, 11)


# ---------------------------------------------------------------- anonymisation

@pytest.mark.parametrize("method,strength", [("blur", 0.2), ("pixelate", 3)])
def test_anonymise_changes_only_pixels_inside_the_boxes(method, strength):
    img = np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    boxes = [[5, 5, 25, 30], [40, 20, 70, 45]]  # the second leaves the image: clipped
    out = anonymise(img, boxes, method=method, strength=strength)
    inside = np.zeros(img.shape[:2], bool)
    inside[5:30, 5:25] = True
    inside[20:45, 40:60] = True
    assert np.array_equal(out[~inside], img[~inside])
    assert (out[inside] != img[inside]).mean() > 0.5
    assert out.shape == img.shape and out.dtype == np.uint8


def test_pixelate_blocks_are_constant():
    img = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    out = anonymise(img, [[0, 0, 40, 40]], method="pixelate", strength=4)
    assert len(np.unique(out[:10, :10].reshape(-1, 3), axis=0)) == 1
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 16


def test_anonymise_faces_uses_the_detector_and_rejects_unknown_method():
    class FakeDetector:
        def detect(self, image):
            from facekit.detection.interface import Detections
            return Detections(torch.tensor([[10.0, 10.0, 20.0, 20.0]]), torch.ones(1), None)

    img = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out, boxes = anonymise_faces(img, FakeDetector(), method="pixelate", strength=2)
    assert boxes.shape == (1, 4) and np.array_equal(out[:10], img[:10])
    with pytest.raises(ConfigError, match="anonymisation method"):
        anonymise(img, boxes, method="swirl")


@pytest.mark.parametrize("name", ["facekit.privacy.templates", "facekit.privacy.federated", "facekit.privacy.anonymise",
                                  pytest.param("facekit.privacy.dp", marks=needs_opacus)])
def test_doctests(name):
    import doctest

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
