"""Typed experiment configs.

A YAML file is parsed into frozen pydantic models. Unknown keys and wrong types are errors that name the
file and the key path (``ranking.objectives[1].direction``). Relative paths inside a config are resolved
against the config file's folder, so a config means the same thing from any working directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mi.errors import ConfigError

WORKING_IONS = ("Li", "Na", "K", "Mg", "Ca", "Zn", "Al")


def _resolve(base_dir: str, path: str) -> Path:
    p = Path(path).expanduser()
    # normpath, not Path.resolve: keep symlinks as the user wrote them, drop the "configs/../" noise.
    return Path(os.path.normpath(p if p.is_absolute() else Path(base_dir) / p))


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- candidates -------------------------------------------------------------------------------------


class CandidatesConfig(_Frozen):
    """Where candidates come from, and what makes one unusable."""

    sources: list[str] = Field(min_length=1, description="files, folders or globs; relative to the config file")
    formula_column: str = "formula"
    id_column: str = "id"
    min_distance_A: float = Field(0.5, gt=0, description="closer sites count as overlapping atoms")
    min_volume_per_atom_A3: float = Field(1.0, gt=0, description="smaller cells count as collapsed")
    max_atoms: int = Field(2000, gt=0, description="larger cells are reported, not screened")

    @field_validator("sources", mode="before")
    @classmethod
    def _one_source_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


# --- features ---------------------------------------------------------------------------------------


class FeaturesConfig(_Frozen):
    """Feature sets computed for every candidate (a model adds the sets its checkpoint needs)."""

    sets: list[str] = Field(default_factory=lambda: ["composition", "structure"])


# --- model ------------------------------------------------------------------------------------------


class DatasetConfig(_Frozen):
    """A training dataset: a named built-in loader, or a table of formulas with target columns."""

    kind: Literal["pymatgen_exp_formation_enthalpy", "csv"] = "pymatgen_exp_formation_enthalpy"
    path: str | None = None
    formula_column: str = "formula"
    targets: dict[str, str] = Field(
        default_factory=dict, description="target name -> column in the file (csv datasets only)"
    )
    units: dict[str, str] = Field(default_factory=dict, description="target name -> unit (csv datasets only)")

    @model_validator(mode="after")
    def _csv_needs_path_and_targets(self) -> DatasetConfig:
        if self.kind == "csv" and (self.path is None or not self.targets):
            raise ValueError("a csv dataset needs 'path' and at least one entry in 'targets'")
        return self


class TrainConfig(_Frozen):
    """How to train the descriptor ensemble surrogate."""

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    feature_sets: list[str] = Field(default_factory=lambda: ["composition"])
    ensemble_size: int = Field(5, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [256, 128])
    dropout: float = Field(0.05, ge=0, lt=1)
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(40, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"


class ModelConfig(_Frozen):
    """The surrogate: a checkpoint to load (``builtin:<name>`` or a path), or a training recipe.

    With neither given, the embedded default (``builtin:formation_enthalpy``) is used.
    """

    checkpoint: str | None = None
    train: TrainConfig | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _default_checkpoint(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("checkpoint") is None and data.get("train") is None:
            return {**data, "checkpoint": "builtin:formation_enthalpy"}
        return data

    @model_validator(mode="after")
    def _not_both(self) -> ModelConfig:
        if self.train is not None and self.checkpoint is not None:
            raise ValueError("give either 'checkpoint' or 'train', not both")
        return self


# --- properties -------------------------------------------------------------------------------------


class PropertiesConfig(_Frozen):
    """Exact calculators run on every candidate."""

    working_ion: Literal["Li", "Na", "K", "Mg", "Ca", "Zn", "Al"] = "Li"
    calculators: list[Literal["density", "capacity", "cost"]] = Field(
        default_factory=lambda: ["density", "capacity", "cost"]
    )
    element_table: str | None = Field(None, description="CSV that replaces the packaged element facts")


# --- ranking ----------------------------------------------------------------------------------------


class Constraint(_Frozen):
    column: str
    min: float | None = None
    max: float | None = None
    keep_missing: bool = Field(False, description="keep candidates whose value is missing (NaN)")

    @model_validator(mode="after")
    def _needs_a_bound(self) -> Constraint:
        if self.min is None and self.max is None:
            raise ValueError("a constraint needs 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


class Objective(_Frozen):
    column: str
    direction: Literal["max", "min"]
    weight: float = Field(1.0, ge=0)
    normalise: Literal["minmax", "rank", "zscore"] = "minmax"


class RankingConfig(_Frozen):
    constraints: list[Constraint] = Field(default_factory=list)
    objectives: list[Objective] = Field(min_length=1)
    top_k: int = Field(10, ge=1)


# --- export -----------------------------------------------------------------------------------------


class ExportConfig(_Frozen):
    out_dir: str = Field("../experiments", description="runs go to <out_dir>/<name>/<run-id>/")
    top_cif: bool = True
    write_json: bool = True


# --- the experiment ---------------------------------------------------------------------------------


class ScreenConfig(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    candidates: CandidatesConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    properties: PropertiesConfig = Field(default_factory=PropertiesConfig)
    ranking: RankingConfig
    export: ExportConfig = Field(default_factory=ExportConfig)
    # The folder relative paths are resolved against; set by the loader, never read from YAML.
    base_dir: str = Field(".", exclude=True)

    def resolve(self, path: str) -> Path:
        """A path from the config, resolved against the config file's folder."""
        return _resolve(self.base_dir, path)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def hash(self) -> str:
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


class TrainRunConfig(_Frozen):
    """`mi train CONFIG`: a dataset, a recipe and where the checkpoint goes."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: str = Field(description="output path of the checkpoint; relative to the config file")
    base_dir: str = Field(".", exclude=True)

    def resolve(self, path: str) -> Path:
        return _resolve(self.base_dir, path)


# --- loading ----------------------------------------------------------------------------------------


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def _describe(error: dict) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    return error["msg"]


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``ranking.top_k=20`` -> (['ranking', 'top_k'], 20). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    parts: list[str | int] = []
    for token in key.strip().split("."):
        name, *indices = token.replace("]", "").split("[")
        if not name:
            raise ConfigError(f"--set {text!r}: empty key in {key!r}")
        parts.append(name)
        parts.extend(int(i) for i in indices)
    return parts, yaml.safe_load(raw) if raw.strip() else None


def _apply_override(data: dict, parts: list[str | int], value: Any, text: str) -> None:
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"--set {text!r}: index {part} is out of range")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {part!r} is not inside a mapping")
            node = node.setdefault(part, [] if isinstance(nxt, int) else {})
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"--set {text!r}: index {last} is out of range")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise ConfigError(f"--set {text!r}: {last!r} is not inside a mapping")
        node[last] = value


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    if "base_dir" in data:
        raise ConfigError(f"{path}: base_dir: unknown key")
    return data


def _load(model: type[_Frozen], path: str | Path, overrides: list[str] | tuple[str, ...]):
    path = Path(path)
    data = _read_yaml(path)
    for text in overrides:
        parts, value = parse_override(text)
        _apply_override(data, parts, value, text)
    try:
        return model.model_validate({**data, "base_dir": str(path.resolve().parent)})
    except ValidationError as exc:
        lines = [f"{path}: {_key_path(e['loc'])}: {_describe(e)}" for e in exc.errors()]
        raise ConfigError("invalid config\n  " + "\n  ".join(lines)) from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ScreenConfig:
    """Read a screening config, apply ``--set`` overrides, and validate it."""
    return _load(ScreenConfig, path, overrides)


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainRunConfig:
    """Read a `mi train` config."""
    return _load(TrainRunConfig, path, overrides)
