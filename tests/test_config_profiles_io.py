import os
from dataclasses import dataclass

import pytest

import facekit
from facekit import io, profiles
from facekit.config import ConfigError, check_keys, choice, config_from, make_config, replace


@dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    epochs: int = 3


def test_make_config_and_replace_name_typos():
    assert make_config(Cfg, {"lr": 0.5}, epochs=7) == Cfg(0.5, 7)
    with pytest.raises(ConfigError, match=r"'epoch' \(did you mean 'epochs'\?\); accepted: epochs, lr"):
        make_config(Cfg, epoch=2)
    with pytest.raises(ConfigError, match="'lrate'"):
        replace(Cfg(), lrate=1.0)
    assert replace(Cfg(), lr=2.0).lr == 2.0


@dataclass(frozen=True)
class PresetCfg(Cfg):
    @classmethod
    def preset(cls, name, **overrides):
        check_keys([name], {"fast": None}, what="PresetCfg preset")
        return make_config(cls, {"epochs": 1}, **overrides)


def test_config_from_every_accepted_form():
    assert config_from(Cfg) == Cfg() and config_from(Cfg, None, lr=0.5) == Cfg(0.5)
    assert config_from(Cfg, {"epochs": 7}, lr=0.2) == Cfg(0.2, 7)
    assert config_from(Cfg, Cfg(0.3, 4), epochs=5) == Cfg(0.3, 5)
    assert config_from(PresetCfg, "fast", lr=0.7) == PresetCfg(0.7, 1)
    with pytest.raises(ConfigError, match="'slow'"):
        config_from(PresetCfg, "slow")
    with pytest.raises(ConfigError, match="Cfg has no presets"):
        config_from(Cfg, "fast")
    with pytest.raises(ConfigError, match="'epoch'"):
        config_from(Cfg, Cfg(), epoch=2)
    with pytest.raises(ConfigError, match="'epoch'"):
        config_from(Cfg, {"epoch": 2})


def test_choice_and_check_keys():
    assert choice("a", ["a", "b"], name="mode") == "a"
    with pytest.raises(ConfigError, match="mode='c' is not accepted; use one of: 'a', 'b'"):
        choice("c", ["a", "b"], name="mode")
    check_keys(["x"], ["x", "y"], what="key")


def test_profiles(monkeypatch):
    monkeypatch.delenv(profiles.ENV_VAR, raising=False)
    assert profiles.resolve_profile("smoke") == "smoke"
    import torch

    assert profiles.resolve_profile("auto") == ("gpu" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv(profiles.ENV_VAR, "smoke")
    assert profiles.resolve_profile("auto") == "smoke"
    assert profiles.resolve_profile("cpu") == "cpu"  # an explicit profile wins over the variable
    monkeypatch.setenv(profiles.ENV_VAR, "fast")
    with pytest.raises(ConfigError, match="FACEKIT_PROFILE='fast'"):
        profiles.resolve_profile("auto")
    with pytest.raises(ConfigError, match="profile='laptop'"):
        profiles.resolve_profile("laptop")


def test_pick_needs_every_profile():
    assert profiles.pick("gpu", smoke=1, cpu=2, gpu=3) == ("gpu", 3)
    with pytest.raises(ConfigError, match=r"missing \['gpu'\]"):
        profiles.pick("cpu", smoke=1, cpu=2)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    assert oct(os.stat(target).st_mode & 0o777) != "0o600"


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = "import sys, facekit; print('torch' in sys.modules, 'facekit.data' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    assert "data" in dir(facekit)


def test_cache_and_artifact_paths(monkeypatch, tmp_path):
    from facekit.io import artifact_path, cache_dir

    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("FACEKIT_ARTIFACTS", raising=False)
    assert cache_dir("x") == tmp_path / "c" / "x"
    assert artifact_path("enc.pt", "cpu") == tmp_path / "c" / "artifacts" / "cpu" / "enc.pt"
    monkeypatch.setenv("FACEKIT_ARTIFACTS", str(tmp_path / "a"))
    assert artifact_path("enc.pt", "smoke") == tmp_path / "a" / "smoke" / "enc.pt"
    for bad in ["", "/abs.pt", "../up.pt"]:
        with pytest.raises(ValueError, match="artifact name"):
            artifact_path(bad, "cpu")
    with pytest.raises(ValueError, match="resolve 'auto'"):
        artifact_path("enc.pt", "auto")
    assert not (tmp_path / "c").exists()  # nothing is created by asking


def test_cache_dir_strips_whitespace_and_blank_means_default(monkeypatch, tmp_path):
    from pathlib import Path

    from facekit.io import cache_dir

    monkeypatch.setenv("FACEKIT_CACHE", f"  {tmp_path / 'c'}\n")
    assert cache_dir("dlib") == tmp_path / "c" / "dlib"
    monkeypatch.setenv("FACEKIT_CACHE", "   ")
    assert cache_dir() == Path.home() / ".cache" / "facekit"


def test_file_sha256_matches_hashlib_across_chunks(tmp_path):
    import hashlib

    from facekit.io import file_sha256

    data = bytes(range(256)) * 41  # 10,496 bytes: several chunks of 1,000 and a partial one
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path, chunk_bytes=1000) == hashlib.sha256(data).hexdigest()
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        file_sha256(tmp_path / "missing.bin")


def test_resolve_device_has_one_home():
    import torch

    from facekit import device, train
    from facekit.train import seed

    assert train.resolve_device is seed.resolve_device is device.resolve_device
    assert device.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device='gpu0'.*'auto', 'cpu'"):
        device.resolve_device("gpu0")
