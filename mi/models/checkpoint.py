"""One-file surrogate checkpoints: plain types and CPU tensors, loadable with ``weights_only=True``.

Layout (format version 2)::

    {
      "format": "mi.surrogate",       # tells a checkpoint of ours from any other torch file
      "format_version": 2,
      "model_kind": "mlp",            # mlp | element_attention | cgcnn | forest (mi.models.nets)
      "model_config": {...},          # <class of model_kind>(**model_config)
      "state_dict": {...},            # weights and the normaliser buffers, CPU tensors
      "featurizer": {...},            # what the model reads: {"inputs": "features" | "composition" | "graph", ...}
      "feature_sets": [{"name": "composition", "version": 1}, ...],   # descriptor models; [] otherwise
      "feature_names": [...],
      "targets": [{"name": "formation_enthalpy_eV_atom", "unit": "eV/atom"}, ...],
      "training": {...},              # dataset + provenance, data hash and size, recipe, split, metrics
      "domain": {...},                # optional: the domain of applicability (mi.models.domain), plain lists
      "versions": {"mi": ..., "torch": ..., "pymatgen": ..., "python": ...},
      "created_utc": "2025-01-01T00:00:00Z",
      "payload_sha256": "sha256:...",  # of everything above but itself (weights byte for byte); checked on load
    }

Loading never runs code: ``torch.load(weights_only=True)`` refuses pickled objects, and a checkpoint whose
contents do not hash to its ``payload_sha256`` (a weight edited in place, a corrupted copy) is refused, as
is one whose file hash differs from an ``expected_sha256`` a caller recorded (a run manifest, a card).
A checkpoint without a ``payload_sha256`` is refused too, unless its file hash is one of
`SHIPPED_WITHOUT_PAYLOAD_HASH` (files mi itself shipped before the payload hash existed; none today, the
built-ins carry theirs): otherwise deleting the key would switch the check off.

Version 1 (an `EnsembleMLP` without ``model_kind`` or ``featurizer``; the embedded default) is still read.
``builtin:<name>`` names a checkpoint shipped in ``mi/models/builtin/<name>.pt``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import pickle
import platform
import zipfile
from contextlib import ExitStack
from datetime import datetime, timezone
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mi
from mi.errors import CheckpointError
from mi.files import atomic_file, sha256_file
from mi.models.torchzip import StoredTensor, load_without_torch

if TYPE_CHECKING:  # torch and the models load when a checkpoint is written or loaded, not for a card
    import torch

    from mi.models.surrogate import Surrogate

FORMAT = "mi.surrogate"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: descriptor MLPs only, read as model_kind "mlp"
BUILTIN_PREFIX = "builtin:"
SHIPPED_WITHOUT_PAYLOAD_HASH: frozenset[str] = frozenset()  # file sha256s; the built-ins all carry payload hashes
_REQUIRED = ("model_config", "state_dict", "feature_sets", "feature_names", "targets", "training")


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _versions() -> dict[str, str]:
    import torch

    return {
        "mi": str(mi.__version__),
        "torch": str(torch.__version__),  # a TorchVersion, which weights_only loading refuses
        "pymatgen": _package_version("pymatgen"),
        "python": platform.python_version(),
    }


def _tensor_bytes(tensor: torch.Tensor | StoredTensor) -> bytes:
    if isinstance(tensor, StoredTensor):  # read without torch (cards): already C-ordered
        return tensor.array.tobytes()
    import torch

    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def payload_digest(payload: dict[str, Any]) -> str:
    """``sha256:<hex>`` of a checkpoint payload without its own ``payload_sha256``: the plain fields as sorted
    JSON, then every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    plain = {k: v for k, v in payload.items() if k not in ("state_dict", "payload_sha256")}
    digest.update(json.dumps(plain, sort_keys=True, default=repr).encode())
    for name in sorted(payload.get("state_dict", {})):
        tensor = payload["state_dict"][name]
        digest.update(f"\n{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(_tensor_bytes(tensor))
    return "sha256:" + digest.hexdigest()


def builtin_names() -> list[str]:
    folder = importlib.resources.files("mi.models") / "builtin"
    if not folder.is_dir():
        return []
    return sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".pt"))


def checkpoint_payload(surrogate: Surrogate) -> dict[str, Any]:
    """The dict `save_checkpoint` writes: plain types and CPU tensors only."""
    spec = surrogate.spec
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_kind": surrogate.module.kind,
        "model_config": surrogate.module.config(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in surrogate.module.state_dict().items()},
        "featurizer": surrogate.module.featurizer(),
        "feature_sets": [{"name": n, "version": int(v)} for n, v in spec.feature_sets.items()],
        "feature_names": list(spec.feature_names),
        "targets": [{"name": t, "unit": spec.units.get(t, "")} for t in spec.targets],
        "training": spec.training,
        **({"domain": surrogate.domain.to_payload()} if surrogate.domain is not None else {}),
        **({"baseline": dict(spec.baseline)} if spec.baseline is not None else {}),
        "versions": _versions(),
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    payload["payload_sha256"] = payload_digest(payload)
    return payload



def _check_plain(value: Any, where: str = "checkpoint") -> None:
    """Refuse anything `torch.load(weights_only=True)` would refuse, naming where it is."""
    import torch

    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"{where}: key {key!r} is not a str")
            _check_plain(item, f"{where}.{key}")
    elif type(value) is list:
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif isinstance(value, torch.Tensor):
        if value.device.type != "cpu":
            raise TypeError(f"{where}: tensor on {value.device}, expected the CPU")
    elif value is not None and type(value) not in (str, int, float, bool):
        raise TypeError(f"{where}: {type(value).__name__} is not a plain type (str, int, float, bool, None)")


def save_checkpoint(surrogate: Surrogate, path: str | Path) -> Path:
    """Write the checkpoint atomically (temporary file in the same folder, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = checkpoint_payload(surrogate)
    _check_plain(payload)
    import torch

    with atomic_file(path) as out:
        torch.save(payload, out)
    return path


def _resolve(path_or_name: str | Path) -> tuple[str, ExitStack, Path]:
    """(label for messages, exit stack owning any temporary extraction, local path) of a checkpoint."""
    text = str(path_or_name)
    stack = ExitStack()
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX) :]
        resource = importlib.resources.files("mi.models") / "builtin" / f"{name}.pt"
        if not name or not resource.is_file():
            known = ", ".join(BUILTIN_PREFIX + n for n in builtin_names()) or "none"
            raise CheckpointError(f"{text}: no such built-in checkpoint (available: {known})")
        return text, stack, stack.enter_context(importlib.resources.as_file(resource))
    path = Path(text).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    return str(path), stack, path


def _load_error(label: str, exc: BaseException) -> CheckpointError:
    """What went wrong with torch.load, in a user's words."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "Weights only load failed" in str(exc) or isinstance(exc, pickle.UnpicklingError):
        return CheckpointError(
            f"{label}: refused: the file holds pickled Python objects, not plain data and tensors (loading it "
            f"could run code); mi checkpoints never do. ({text[:200]})"
        )
    if isinstance(exc, (EOFError, zipfile.BadZipFile)) or "central directory" in str(exc) or "truncated" in str(
        exc
    ).lower():
        return CheckpointError(
            f"{label}: not a readable mi checkpoint (truncated, corrupted, or an incomplete copy): {text[:200]}"
        )
    return CheckpointError(
        f"{label}: not a readable mi checkpoint (truncated, corrupted, or not written by mi): "
        f"{type(exc).__name__}: {text[:200]}"
    )


def _without_torch(path: Path) -> Any:
    """`load_without_torch`, or None where its short list of globals falls short (torch then decides)."""
    try:
        return load_without_torch(path)
    except pickle.UnpicklingError:
        return None


def _read(
    path_or_name: str | Path, expected_sha256: str | None = None, with_torch: bool = True
) -> tuple[str, Path, dict[str, Any], str, int]:
    """Load and validate the raw payload; returns (label, path, payload, sha256, size in bytes).

    `with_torch=False` reads it without importing torch (tensors as numpy-backed `StoredTensor`s; the same
    checks, payload hash included): for cards and config validation, never for building a model."""
    label, stack, path = _resolve(path_or_name)
    with stack:
        digest, size = sha256_file(path), path.stat().st_size
        if expected_sha256 is not None and digest != expected_sha256:
            raise CheckpointError(
                f"{label}: file hash {digest} differs from the recorded {expected_sha256}: the checkpoint was "
                "replaced or modified since it was recorded"
            )
        try:
            payload = None if with_torch else _without_torch(path)
            if payload is None:
                import torch

                payload = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - truncated zip, foreign pickle, unsafe global, ...
            raise _load_error(label, exc) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{label}: not an mi surrogate checkpoint (no '{FORMAT}' format marker)")
    found = payload.get("format_version")
    if found not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{label}: checkpoint format version {found!r}, but this mi ({mi.__version__}) reads version "
            f"{FORMAT_VERSION} (and {', '.join(map(str, READABLE_VERSIONS[:-1]))}); retrain it with this mi or "
            f"use the mi version that wrote it ({payload.get('versions', {}).get('mi', 'unknown')})"
        )
    absent = [key for key in _REQUIRED if key not in payload]
    if found >= 2 and "model_kind" not in payload:
        absent.append("model_kind")
    if absent:
        raise CheckpointError(f"{label}: checkpoint lacks {', '.join(absent)}")
    _verify_payload(label, payload, digest)
    if found == 1:  # version 1 held descriptor MLPs only
        payload = {**payload, "model_kind": "mlp", "featurizer": {"inputs": "features"}}
    return label, path, payload, digest, size


def _verify_payload(label: str, payload: dict[str, Any], file_digest: str) -> None:
    """Refuse contents that do not hash to the ``payload_sha256`` recorded when the checkpoint was written, and
    a checkpoint without one unless mi shipped that very file."""
    recorded = payload.get("payload_sha256")
    if recorded is None:
        if file_digest in SHIPPED_WITHOUT_PAYLOAD_HASH:
            return
        raise CheckpointError(
            f"{label}: no payload_sha256, so its contents cannot be checked; refused (written before mi "
            "recorded payload hashes, or the hash was removed: retrain it with this mi)"
        )
    try:
        actual = payload_digest(payload)
    except Exception as exc:  # noqa: BLE001 - a state_dict of non-tensors is no checkpoint of ours
        raise CheckpointError(f"{label}: malformed checkpoint contents: {exc}") from None
    if actual != recorded:
        raise CheckpointError(
            f"{label}: contents do not match the hash recorded inside the checkpoint (payload_sha256): the "
            "file was modified or corrupted after it was written; refused"
        )


def _check_feature_sets(label: str, payload: dict[str, Any]) -> None:
    from mi.features import FEATURE_SETS

    for entry in payload["feature_sets"]:
        name, wanted = entry["name"], entry["version"]
        current = FEATURE_SETS.get(name)
        if current is None:
            raise CheckpointError(f"{label}: needs feature set {name!r}, which this mi does not have")
        if current.version != wanted:
            raise CheckpointError(
                f"{label}: trained on feature set {name!r} version {wanted}, this mi computes version "
                f"{current.version}; retrain the model"
            )


def load_checkpoint(path_or_name: str | Path, expected_sha256: str | None = None) -> Surrogate:
    """A `Surrogate` on the CPU (move it with ``.to(device)``) from a path or ``builtin:<name>``.

    `expected_sha256` (``sha256:<hex>`` of the file, e.g. from a run manifest) makes any other file an error.
    """
    label, _path, payload, _digest, _size = _read(path_or_name, expected_sha256)
    _check_feature_sets(label, payload)
    from mi.models.nets import model_kinds
    from mi.models.surrogate import Surrogate, SurrogateSpec

    kinds = model_kinds()
    kind = payload["model_kind"]
    if kind not in kinds:
        raise CheckpointError(f"{label}: model kind {kind!r} is unknown to this mi (knows {', '.join(kinds)})")
    try:
        module = kinds[kind](**payload["model_config"])
        module.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{label}: weights do not match the model config: {exc}") from None
    module.eval()
    if module.input_kind == "features" and len(payload["feature_names"]) != module.n_features:
        raise CheckpointError(
            f"{label}: {len(payload['feature_names'])} feature names for a model of {module.n_features} inputs"
        )
    saved, current = payload.get("featurizer", {}), module.featurizer()
    if any(saved.get(key) != value for key, value in current.items() if key in saved):
        raise CheckpointError(f"{label}: trained with featurizer {saved}, this mi builds {current}; retrain the model")
    targets = payload["targets"]
    spec = SurrogateSpec(
        feature_sets={e["name"]: int(e["version"]) for e in payload["feature_sets"]},
        feature_names=list(payload["feature_names"]),
        targets=[t["name"] for t in targets],
        units={t["name"]: t["unit"] for t in targets},
        training=dict(payload["training"]),
        baseline=dict(payload["baseline"]) if payload.get("baseline") is not None else None,
    )
    domain = None
    if payload.get("domain") is not None:
        from mi.models.domain import Domain

        try:
            domain = Domain.from_payload(payload["domain"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{label}: unreadable domain of applicability: {exc}") from None
    baseline_model = None
    if spec.baseline is not None:
        try:
            baseline_model = baseline_energy_model(spec.baseline["energy_model"], spec.baseline.get("energy_sha256"))
        except CheckpointError as exc:
            raise CheckpointError(f"{label}: its {spec.baseline['kind']} baseline reads {exc}; the correction was "
                                  "learned on that model's energies: retrain this one too") from None
    return Surrogate(module, spec, domain, baseline_model)


@lru_cache(maxsize=8)
def baseline_energy_model(name: str, sha256: str | None) -> Surrogate:
    """The energy model a baseline reads (`mi.models.baseline`), loaded once per process and checked against
    the sha256 it was trained with: another model's energies would not match the learned correction."""
    return load_checkpoint(name, expected_sha256=sha256)


def checkpoint_targets(path_or_name: str | Path, expected_sha256: str | None = None) -> tuple[list[str], str]:
    """(target names, file sha256) of a checkpoint, read and verified without torch or the domain: what
    ``mi validate`` needs, fast."""
    _label, _path, payload, digest, _size = _read(path_or_name, expected_sha256, with_torch=False)
    return [t["name"] for t in payload["targets"]], digest


def checkpoint_card(path_or_name: str | Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Everything about a checkpoint except its weights: for ``mi info`` and run records (read without
    torch; the same checks as loading, payload hash included)."""
    label, path, payload, digest, size = _read(path_or_name, expected_sha256, with_torch=False)
    state = payload["state_dict"]
    target_stats = {}
    for j, target in enumerate(payload["targets"]):
        target_stats[target["name"]] = {
            key: float(state[buffer][j])
            for key, buffer in (("train_mean", "target_mean"), ("train_std", "target_std"), ("std_scale", "std_scale"))
            if buffer in state
        }
    card = {key: value for key, value in payload.items() if key not in ("state_dict", "domain")}
    if payload.get("domain") is not None:
        from mi.models.domain import Domain

        card["domain"] = Domain.from_payload(payload["domain"]).summary()
    card.update(
        {
            "checkpoint": label,
            "path": str(path),
            "sha256": digest,
            "size_bytes": size,
            "n_parameters": sum(int(t.numel()) for k, t in state.items() if k.startswith("members.")),
            "n_features": len(payload["feature_names"]),
            "model_kind": payload["model_kind"],
            "featurizer": payload.get("featurizer", {}),
            "target_stats": target_stats,
        }
    )
    return card
