"""Checkpoint cards and `mi validate` read checkpoints without importing torch, as strictly as loading does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mi.errors import CheckpointError
from mi.models.checkpoint import (
    builtin_names,
    checkpoint_card,
    checkpoint_targets,
    load_checkpoint,
    payload_digest,
    save_checkpoint,
)
from mi.models.torchzip import load_without_torch

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_validating_a_screen_config_with_checkpoints_does_not_import_torch():
    code = (
        "import sys\n"
        "from mi.cli import main\n"
        "assert main(['validate', 'configs/cathode.yaml']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "predicted columns" in done.stdout


@pytest.mark.parametrize("name", builtin_names())
def test_the_torch_free_reader_gives_the_torch_payload(name):
    path = REPO / "mi" / "models" / "builtin" / f"{name}.pt"
    with_torch = torch.load(path, weights_only=True, map_location="cpu")
    without = load_without_torch(path)
    assert set(without) == set(with_torch)
    assert {k: v for k, v in without.items() if k != "state_dict"} == {
        k: v for k, v in with_torch.items() if k != "state_dict"
    }
    assert list(without["state_dict"]) == list(with_torch["state_dict"])
    for key, tensor in with_torch["state_dict"].items():
        stored = without["state_dict"][key]
        assert stored.dtype == str(tensor.dtype) and stored.shape == tuple(tensor.shape)
        np.testing.assert_array_equal(stored.array, tensor.numpy())
    assert payload_digest(without) == payload_digest(with_torch) == with_torch["payload_sha256"]
    targets, sha256 = checkpoint_targets(f"builtin:{name}")
    assert targets == [t["name"] for t in with_torch["targets"]]
    assert sha256 == checkpoint_card(f"builtin:{name}")["sha256"]


def test_a_non_contiguous_tensor_is_read_by_its_strides(tmp_path):
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    saved = {"t": base.t()[1:, ::2], "i": torch.tensor([3, -1], dtype=torch.int64), "e": torch.zeros(0, 3)}
    torch.save(saved, tmp_path / "views.pt")
    read = load_without_torch(tmp_path / "views.pt")
    for key, tensor in saved.items():
        np.testing.assert_array_equal(read[key].array, tensor.numpy())
        assert read[key].dtype == str(tensor.dtype)


def test_cards_refuse_tampered_and_code_running_checkpoints_without_running_code(tmp_path):
    saved = save_checkpoint(load_checkpoint("builtin:formation_enthalpy"), tmp_path / "model.pt")
    raw = torch.load(saved, weights_only=True)
    name = next(k for k, v in raw["state_dict"].items() if v.dtype == torch.float32 and v.numel() > 16)
    blob = bytearray(saved.read_bytes())
    at = bytes(blob).find(raw["state_dict"][name].numpy().tobytes()[:64])
    assert at > 0
    blob[at + 3] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="payload_sha256|corrupted"):
        checkpoint_targets(tmp_path / "flipped.pt")
    with pytest.raises(CheckpointError, match="payload_sha256|corrupted"):
        checkpoint_card(tmp_path / "flipped.pt")
    edited = {**raw, "state_dict": {**raw["state_dict"], name: raw["state_dict"][name] + 1.0}}
    torch.save(edited, tmp_path / "edited.pt")  # a sound zip whose weights are not the recorded ones
    with pytest.raises(CheckpointError, match="payload_sha256"):
        checkpoint_targets(tmp_path / "edited.pt")

    marker = tmp_path / "pwned"
    torch.save({"format": "mi.surrogate", "format_version": 2, "state_dict": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint_targets(tmp_path / "evil.pt")
    assert not marker.exists()
    (tmp_path / "cut.pt").write_bytes(saved.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable"):
        checkpoint_card(tmp_path / "cut.pt")


def test_what_the_small_reader_does_not_know_goes_to_torch(tmp_path):
    import pickle

    raw = torch.load(REPO / "mi" / "models" / "builtin" / "formation_enthalpy.pt", weights_only=True)
    raw = {k: v for k, v in raw.items() if k != "payload_sha256"}
    raw["training"] = {**raw["training"], "dtype": torch.float32}  # weights_only allows it, the small reader not
    raw["payload_sha256"] = payload_digest(raw)
    torch.save(raw, tmp_path / "dtype.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_without_torch(tmp_path / "dtype.pt")
    assert checkpoint_targets(tmp_path / "dtype.pt")[0] == [t["name"] for t in raw["targets"]]
