"""Checkpoints and feature caches are read without running code, and refused when tampered, truncated or foreign."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mi.cli import main
from mi.errors import CheckpointError
from mi.features import FeatureCache, featurize_candidates
from mi.files import sha256_file as file_sha256
import mi.models.checkpoint as checkpoint_module
from mi.models.checkpoint import FORMAT, builtin_names, checkpoint_card, load_checkpoint, save_checkpoint


class _Payload:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    return save_checkpoint(load_checkpoint("builtin:formation_enthalpy"), path)


def test_a_checkpoint_that_runs_code_on_unpickling_is_refused_and_the_code_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "format_version": 2, "state_dict": _Payload(marker)}, zipped)
    legacy = tmp_path / "evil.pkl.pt"
    legacy.write_bytes(pickle.dumps({"format": FORMAT, "x": _Payload(marker)}))
    for path in (zipped, legacy):
        with pytest.raises(CheckpointError, match="refused|not a readable"):
            load_checkpoint(path)
        assert main(["info", str(path)]) != 0
    assert not marker.exists()
    # the bytes do carry the payload: a plain pickle.load would have run it
    pickle.loads(legacy.read_bytes())
    assert marker.exists()


def test_truncated_foreign_and_future_checkpoints_are_refused(saved, tmp_path):
    data = saved.read_bytes()
    for n, cut in enumerate((0, 10, len(data) // 3, len(data) - 20)):
        path = tmp_path / f"cut{n}.pt"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|not a readable"):
            load_checkpoint(path)
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    archive = tmp_path / "archive.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "a zip, not a checkpoint")
    arrays = tmp_path / "arrays.pt"
    with open(arrays, "wb") as fh:
        np.savez(fh, a=np.arange(3))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    for path in (text, archive, arrays):
        with pytest.raises(CheckpointError, match="not a readable mi checkpoint|truncated"):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not an mi surrogate checkpoint"):
        load_checkpoint(other)
    raw = torch.load(saved, weights_only=True, map_location="cpu")
    future = tmp_path / "future.pt"
    torch.save({**raw, "format_version": 99}, future)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(future)


def test_a_tampered_checkpoint_is_refused(saved, tmp_path):
    raw = torch.load(saved, weights_only=True, map_location="cpu")
    assert raw["payload_sha256"].startswith("sha256:")
    name = next(k for k, v in raw["state_dict"].items() if v.dtype == torch.float32 and v.numel() > 16)
    edited = {**raw, "state_dict": {**raw["state_dict"], name: raw["state_dict"][name] * 1.01}}
    path = tmp_path / "edited.pt"
    torch.save(edited, path)  # a valid torch file whose weights are no longer the ones recorded
    with pytest.raises(CheckpointError, match="payload_sha256"):
        load_checkpoint(path)
    # bytes flipped inside a tensor of the file itself
    blob = bytearray(saved.read_bytes())
    needle = raw["state_dict"][name].numpy().tobytes()[:64]
    at = bytes(blob).find(needle)
    assert at > 0
    blob[at + 3] ^= 0xFF
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError):
        load_checkpoint(flipped)


def test_a_checkpoint_whose_payload_hash_was_removed_and_a_weight_changed_is_refused(saved, tmp_path, monkeypatch):
    raw = torch.load(saved, weights_only=True, map_location="cpu")
    name = next(k for k, v in raw["state_dict"].items() if v.dtype == torch.float32 and v.numel() > 16)
    weight = raw["state_dict"][name].clone()
    weight.view(-1)[0] += 1.0
    edited = {k: v for k, v in raw.items() if k != "payload_sha256"}
    edited["state_dict"] = {**raw["state_dict"], name: weight}
    path = tmp_path / "unhashed.pt"
    torch.save(edited, path)
    with pytest.raises(CheckpointError, match="no payload_sha256.*refused"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no payload_sha256"):
        checkpoint_card(path)
    # unless mi shipped that very file (none without a hash today: every built-in carries its hash)
    monkeypatch.setattr(checkpoint_module, "SHIPPED_WITHOUT_PAYLOAD_HASH", frozenset({file_sha256(path)}))
    assert load_checkpoint(path).targets
    monkeypatch.undo()
    assert not checkpoint_module.SHIPPED_WITHOUT_PAYLOAD_HASH
    for name in builtin_names():
        assert torch.load(f"{Path(checkpoint_module.__file__).parent}/builtin/{name}.pt", weights_only=True)["payload_sha256"]


def test_a_recorded_file_hash_is_checked(saved, tmp_path):
    good = file_sha256(saved)
    assert load_checkpoint(saved, expected_sha256=good).targets
    with pytest.raises(CheckpointError, match="differs from the recorded"):
        load_checkpoint(saved, expected_sha256="sha256:" + "0" * 64)


def _candidates(li2s, licoo2):
    from mi.candidates.base import Candidate, structure_hash

    return [Candidate(n, "t", "0", s.composition, s, structure_hash(s)) for n, s in (("a", li2s), ("b", licoo2))]


def test_feature_cache_refuses_tampered_truncated_and_pickled_packs(li2s, licoo2, tmp_path):
    candidates = _candidates(li2s, licoo2)
    first = featurize_candidates(candidates, ["composition"], cache=tmp_path)
    packs = list(tmp_path.rglob("*.npz"))
    assert len(packs) == 1 and first.computed == 2
    with np.load(packs[0], allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["values"] = arrays["values"] + 1.0  # a tampered value, digest left as it was
    with open(packs[0], "wb") as fh:
        np.savez(fh, **arrays)
    second = featurize_candidates(candidates, ["composition"], cache=FeatureCache(tmp_path))
    assert second.from_cache == 0 and second.computed == 2  # recomputed, not trusted
    assert any("does not match its digest" in p for p in second.cache_problems)
    np.testing.assert_array_equal(second.features.values, first.features.values)
    assert list(tmp_path.rglob("*.npz.bad"))

    marker = tmp_path / "pwned"
    for name, data in {
        "truncated": next(tmp_path.rglob("*.npz")).read_bytes()[:100],
        "pickled": _pickled_npz(marker),
    }.items():
        for pack in tmp_path.rglob("*.npz"):
            pack.unlink()
        (tmp_path / "composition-v1").mkdir(exist_ok=True)
        folder = next(p for p in tmp_path.iterdir() if p.is_dir() and p.name.startswith("composition"))
        (folder / f"{name}.npz").write_bytes(data)
        third = featurize_candidates(candidates, ["composition"], cache=FeatureCache(tmp_path))
        assert third.computed == 2 and third.cache_problems, name
        np.testing.assert_array_equal(third.features.values, first.features.values)
    assert not marker.exists()


def _pickled_npz(marker) -> bytes:
    buffer = io.BytesIO()
    objects = np.empty(1, dtype=object)
    objects[0] = _Payload(marker)
    np.savez(buffer, keys=objects, values=np.zeros((1, 1)), errors=objects, columns=objects)
    return buffer.getvalue()
