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
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mi.errors import ConfigError

WORKING_IONS = ("Li", "Na", "K", "Mg", "Ca", "Zn", "Al")


def _resolve(base_dir: str, path: str) -> Path:
    p = Path(path).expanduser()
    # normpath, not Path.resolve: keep symlinks as the user wrote them, drop the "configs/../" noise.
    return Path(os.path.normpath(p if p.is_absolute() else Path(base_dir) / p))


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _FileConfig(_Frozen):
    """A config read from a file: relative paths inside it are relative to that file's folder."""

    base_dir: str = Field(".", exclude=True)
    source: str = Field("", exclude=True, description="the file it was read from (for errors); set by the loader")

    def resolve(self, path: str) -> Path:
        """A path from the config, resolved against the config file's folder."""
        return _resolve(self.base_dir, path)


def sections(cfg: BaseModel, prefix: str = "") -> Iterator[tuple[str, BaseModel]]:
    """Every section of `cfg` (itself first) with its key path, e.g. ``models[0].train.model``.

    Names only a stage knows (feature sets, prototypes and their sites, calculator groups) are checked by that
    stage, which walks the config with this: config is the ground layer and imports no stage (test_layers.py).
    """
    yield prefix, cfg
    for name in type(cfg).model_fields:
        yield from _sections_in(getattr(cfg, name), f"{prefix}.{name}" if prefix else name)


def _sections_in(value: Any, path: str) -> Iterator[tuple[str, BaseModel]]:
    if isinstance(value, BaseModel):
        yield from sections(value, path)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _sections_in(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _sections_in(item, f"{path}.{key}")


def invalid_config(cfg: BaseModel, problems: list[tuple[str, str]]) -> ConfigError:
    """The loader's error for (key path, problem) pairs a stage found in `cfg`: one line each, with the file."""
    source = getattr(cfg, "source", "")
    lines = [f"{source}: {path}: {problem}" if source else f"{path}: {problem}" for path, problem in problems]
    return ConfigError("invalid config\n  " + "\n  ".join(lines))


# --- candidate generation (`mi generate`, `candidates.generate`) -------------------------------------


def _element_symbol(value: str) -> str:
    from pymatgen.core.periodic_table import Element

    if not isinstance(value, str) or not Element.is_valid_symbol(value):
        raise ValueError(f"{value!r} is not an element symbol")
    return value


ElementSymbol = Annotated[str, AfterValidator(_element_symbol)]


class MixConfig(_Frozen):
    """Mixed occupancy of one site: ordered arrangements in small supercells, or one virtual composition."""

    site: str = Field(description="a site label of the prototype (or an element: all its sites)")
    species: list[ElementSymbol] = Field(min_length=2)
    fractions: list[list[float]] | None = Field(
        None, description="ratios to make, one value per species (e.g. [[0.8, 0.1, 0.1]]); default: all the cells allow"
    )
    mode: Literal["enumerate", "virtual"] = "enumerate"
    max_sites: int = Field(6, ge=2, le=24, description="most mixed sites in one supercell (enumerate)")
    max_arrangements: int = Field(20, ge=1, description="symmetry-distinct arrangements kept per ratio (enumerate)")
    choose: int | None = Field(None, ge=2, description="mix every subset of this many of `species` (a palette)")

    @model_validator(mode="after")
    def _fractions_fit(self) -> MixConfig:
        if self.choose is not None and (self.choose > len(self.species) or self.fractions is not None):
            raise ValueError("choose: at most the number of species, and not together with fractions")
        for i, row in enumerate(self.fractions or []):
            if len(row) != len(self.species) or any(f <= 0 for f in row) or abs(sum(row) - 1.0) > 1e-6:
                raise ValueError(
                    f"fractions[{i}]: need {len(self.species)} positive values (one per species) summing to 1"
                )
        return self


class SubstitutionProbabilityConfig(_Frozen):
    """Add the species pymatgen's data-mined substitution model ranks likely (Hautier et al. 2011)."""

    threshold: float = Field(0.05, gt=0, le=1, description="minimum conditional substitution probability")
    sites: list[str] | None = Field(None, description="labels to extend (default: every non-anion site)")
    max_species: int = Field(6, ge=1, description="most species added per site, most probable first")


class PrototypeJob(_Frozen):
    """Substitutions into one prototype of the library (`mi.candidates.generate.prototypes`)."""

    prototype: str
    name: str | None = Field(None, description="family name in ids and summaries (default: the prototype id)")
    cell: Literal["primitive", "conventional"] = "primitive"
    sites: dict[str, list[ElementSymbol]] = Field(
        default_factory=dict, description="site label (or element of the prototype) -> allowed elements"
    )
    substitution_probability: SubstitutionProbabilityConfig | None = None
    mix: list[MixConfig] = Field(default_factory=list)

    # the prototype and its site labels are checked where generation runs
    # (`mi.candidates.generate.prototypes.check_jobs`: `mi validate`, `mi generate`, a screen's start)


class CompositionSpace(_Frozen):
    """Composition enumeration in a chemical space (charge neutrality and electronegativity order)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    elements: list[ElementSymbol] = Field(min_length=2)
    require: list[ElementSymbol] = Field(default_factory=list, description="elements every composition contains")
    max_elements: int = Field(4, ge=2, le=6)
    max_stoichiometry: int = Field(8, ge=1, le=30, description="largest subscript of one element")
    max_atoms: int = Field(30, ge=2, description="most atoms per formula unit")
    electronegativity_order: bool = Field(True, description="every cation less electronegative than every anion")

    @model_validator(mode="after")
    def _required_in_space(self) -> CompositionSpace:
        missing = [e for e in self.require if e not in self.elements]
        if missing:
            raise ValueError(f"require: {missing} not in elements")
        return self


class GenerateFilters(_Frozen):
    charge_balance: bool = Field(True, description="keep only charge-balanced substitutions (common oxidation states)")
    radius_tolerance: float | None = Field(
        0.35, gt=0, description="largest relative Shannon-radius change of a substituted site; null: no check"
    )
    rescale_volume: bool = Field(True, description="scale the cell by the mean change of its cation-anion bond lengths")


class GenerateConfig(_Frozen):
    """What `mi generate` (or `candidates.generate`) makes."""

    prototypes: list[PrototypeJob] = Field(default_factory=list)
    compositions: list[CompositionSpace] = Field(default_factory=list)
    filters: GenerateFilters = Field(default_factory=GenerateFilters)
    dedupe: bool = Field(True, description="drop structures pymatgen's StructureMatcher finds equal")
    max_candidates: int | None = Field(None, ge=1, description="stop after this many kept candidates")

    @model_validator(mode="after")
    def _something_to_make(self) -> GenerateConfig:
        if not self.prototypes and not self.compositions:
            raise ValueError("give at least one entry in 'prototypes' or 'compositions'")
        return self


class GenerateOutput(_Frozen):
    dir: str = Field("../generated", description="shards go to <dir>/shards/, the summary to <dir>/summary.json")
    format: Literal["jsonl", "extxyz"] = "jsonl"
    shard_size: int = Field(10000, ge=1, description="candidates per shard file")


class GenerateRunConfig(_FileConfig):
    """`mi generate CONFIG`: a generator and where its shards go."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    generate: GenerateConfig
    output: GenerateOutput = Field(default_factory=GenerateOutput)


# --- candidates -------------------------------------------------------------------------------------


class CandidatesConfig(_Frozen):
    """Where candidates come from, and what makes one unusable."""

    sources: list[str] = Field(default_factory=list, description="files, folders or globs; relative to the config file")
    generate: GenerateConfig | str | None = Field(
        None, description="candidates made on the fly: a generator config, or the path of a `mi generate` config"
    )
    formula_column: str = "formula"
    id_column: str = "id"
    min_distance_A: float = Field(0.5, gt=0, description="closer sites count as overlapping atoms")
    min_volume_per_atom_A3: float = Field(1.0, gt=0, description="smaller cells count as collapsed")
    max_atoms: int = Field(2000, gt=0, description="larger cells are reported, not screened")
    species: list[str] | dict[str, list[str]] | None = Field(
        None,
        description="element symbols of VASP 4 POSCARs (no element line), in the order of their counts: one list "
        "for every such file, or a mapping file-name glob -> list; a POTCAR beside the file is read first",
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _one_source_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("species")
    @classmethod
    def _species_are_elements(cls, value: Any) -> Any:
        from pymatgen.core import Element

        lists = value.values() if isinstance(value, dict) else [value] if value is not None else []
        for symbols in lists:
            bad = [s for s in symbols if not Element.is_valid_symbol(s)]
            if bad or not symbols:
                raise ValueError(f"not element symbols: {bad or symbols}")
        return value

    @model_validator(mode="after")
    def _needs_candidates(self) -> CandidatesConfig:
        if not self.sources and self.generate is None:
            raise ValueError("give 'sources', 'generate' or both")
        return self


# --- features ---------------------------------------------------------------------------------------


# Fields that name feature sets are listed in a section's `feature_set_fields`; `mi.features.sets.check_names`
# checks them (`mi validate`, and a screen, training or loop before it starts), not the loader.


class FeaturesConfig(_Frozen):
    """Feature sets computed for every candidate (a model adds the sets its checkpoint needs), and how."""

    sets: list[str] = Field(default_factory=lambda: ["composition", "structure"])
    workers: int | Literal["auto"] = Field(
        "auto",
        description="processes for structure features; 0 or 1 = in this process; auto = one per core (at most 8) "
        "from 500 structures on, in this process below that",
    )
    chunk_size: int = Field(32, ge=1, description="structures per task sent to a worker and per cache write")
    timeout_s: float | None = Field(60.0, gt=0, description="time limit per structure; null = none")
    max_memory_mb: float | None = Field(
        4096.0, gt=0, description="memory one structure's features may add (RLIMIT_AS, Linux); past it the "
        "structure is reported, not the run; null = none",
    )
    cache_dir: str | None = Field(
        "auto",
        description="feature cache folder (relative to the config file); auto = $XDG_CACHE_HOME/mi/features "
        "or ~/.cache/mi/features, resolved when the run starts; null = no cache",
    )

    feature_set_fields: ClassVar[tuple[str, ...]] = ("sets",)

    @field_validator("workers")
    @classmethod
    def _workers_not_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("workers must be 0 or more, or 'auto'")
        return value


# --- model ------------------------------------------------------------------------------------------


class DatasetConfig(_Frozen):
    """A training or evaluation dataset (`mi.models.datasets`): a built-in loader, a file, or a remote source.

    * ``pymatgen_exp_formation_enthalpy``: the experimental formation enthalpies that ship with pymatgen;
    * ``table`` (``csv`` is the same): a CSV, JSON, extended XYZ or ASE database file of formulas or
      structures plus target columns;
    * ``obelix``: OBELiX-format data, a folder with ``train.csv`` (or the CSV itself) and ``train_cifs/``;
    * ``materials_project``: the Materials Project summary endpoint via ``mp-api`` (extra ``mp``; the API
      key comes from ``MP_API_KEY``);
    * ``matbench``: a Matbench task via matminer (downloads on first use);
    * ``concat``: the rows of several datasets (``parts``) stacked, one column per target of any part (NaN
      where a part lacks it), so one multi-task model learns from tables that label different rows.
    """

    kind: Literal[
        "pymatgen_exp_formation_enthalpy", "table", "csv", "obelix", "materials_project", "matbench", "concat"
    ] = "pymatgen_exp_formation_enthalpy"
    path: str | None = Field(None, description="table / obelix: the file or folder; relative to the config file")
    formula_column: str = "formula"
    structure_column: str | None = Field(
        None, description="table: column of pymatgen Structure dicts (JSON) or structure file paths (CSV)"
    )
    targets: dict[str, str] = Field(
        default_factory=dict,
        description="target name -> column (table), summary field (materials_project) or task column (matbench)",
    )
    units: dict[str, str] = Field(default_factory=dict, description="target name -> unit")
    query: dict[str, Any] = Field(
        default_factory=dict, description="materials_project: search criteria, e.g. {chemsys: Li-Fe-O}"
    )
    name: str | None = Field(None, description="matbench: the task, e.g. matbench_mp_e_form")
    limit: int | None = Field(None, ge=1, description="keep only the first N rows (quick runs)")
    parts: list[DatasetConfig] = Field(default_factory=list, description="concat: the datasets to stack")

    @model_validator(mode="after")
    def _complete(self) -> DatasetConfig:
        if (self.kind == "concat") != bool(self.parts):
            raise ValueError("'parts' (a list of datasets) goes with kind: concat, and concat needs parts")
        if self.kind in ("table", "csv") and (self.path is None or not self.targets):
            raise ValueError(f"a {self.kind} dataset needs 'path' and at least one entry in 'targets'")
        if self.kind == "obelix" and self.path is None:
            raise ValueError("an obelix dataset needs 'path' (the folder with train.csv and train_cifs/)")
        if self.kind == "materials_project" and not self.targets:
            raise ValueError("a materials_project dataset needs 'targets' (name -> summary field)")
        if self.kind == "matbench" and not self.name:
            raise ValueError("a matbench dataset needs 'name' (e.g. matbench_mp_e_form)")
        return self


class MLPModelConfig(_Frozen):
    """Ensemble of MLPs on descriptor feature sets (`mi.models.surrogate.EnsembleMLP`)."""

    kind: Literal["mlp"] = "mlp"
    feature_sets: list[str] = Field(default_factory=lambda: ["composition"], min_length=1)
    hidden: list[int] = Field(default_factory=lambda: [256, 128])

    feature_set_fields: ClassVar[tuple[str, ...]] = ("feature_sets",)
    dropout: float = Field(0.05, ge=0, lt=1)
    ensemble_size: int = Field(5, ge=1)


class ElementAttentionConfig(_Frozen):
    """Set network over (element embedding, fraction) tokens (`mi.models.element_net`); compositions only."""

    kind: Literal["element_attention"] = "element_attention"
    d_model: int = Field(96, ge=8)
    n_heads: int = Field(4, ge=1)
    n_layers: int = Field(3, ge=0)
    ff_dim: int = Field(192, ge=8)
    n_pool_heads: int = Field(2, ge=1)
    head_hidden: list[int] = Field(default_factory=lambda: [256, 128])
    dropout: float = Field(0.0, ge=0, lt=1)
    ensemble_size: int = Field(3, ge=1)
    descriptor_sets: list[str] = Field(
        default_factory=list, description="feature sets (e.g. [composition]) fed to the head too; [] = elements only"
    )

    feature_set_fields: ClassVar[tuple[str, ...]] = ("descriptor_sets",)

    @model_validator(mode="after")
    def _heads_divide(self) -> ElementAttentionConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        return self


class CrystalGraphConfig(_Frozen):
    """Crystal graph network (`mi.models.graph_net`): gated message passing on the neighbour graph."""

    kind: Literal["cgcnn"] = "cgcnn"
    cutoff: float = Field(6.0, gt=0, description="neighbour cutoff radius, Angstrom")
    max_neighbors: int = Field(12, ge=1)
    n_gaussians: int = Field(40, ge=2, description="Gaussian distance expansion, centres 0..cutoff")
    atom_dim: int = Field(64, ge=4)
    n_conv: int = Field(3, ge=1)
    head_hidden: list[int] = Field(default_factory=lambda: [128])
    dropout: float = Field(0.0, ge=0, lt=1)
    ensemble_size: int = Field(3, ge=1)


class ForestModelConfig(_Frozen):
    """Tree ensemble on descriptor feature sets (`mi.models.forest.TreeEnsemble`), fitted by scikit-learn in
    one go (no epochs, optimiser or loss); one forest per target, the std the spread of its trees."""

    kind: Literal["forest"] = "forest"
    feature_sets: list[str] = Field(default_factory=lambda: ["composition"], min_length=1)
    algorithm: Literal["random_forest", "extra_trees"] = "random_forest"
    trees: int = Field(300, ge=2, description="trees per target; their spread is the std")
    min_samples_leaf: int = Field(1, ge=1, description="larger: fewer nodes (a smaller checkpoint), smoother")
    max_features: float | Literal["sqrt", "log2"] = Field(1.0, description="features tried per split (fraction)")
    max_depth: int | None = Field(None, ge=1)

    feature_set_fields: ClassVar[tuple[str, ...]] = ("feature_sets",)

    @field_validator("max_features")
    @classmethod
    def _fraction(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0 < value <= 1:
            raise ValueError(f"max_features {value} must be a fraction in (0, 1], sqrt or log2")
        return value


SurrogateModelConfig = Annotated[
    MLPModelConfig | ElementAttentionConfig | CrystalGraphConfig | ForestModelConfig, Field(discriminator="kind")
]


def model_feature_sets(model: BaseModel) -> list[str]:
    """The descriptor feature sets a surrogate model config reads (its `feature_set_fields`); [] for none."""
    return [name for field in getattr(model, "feature_set_fields", ()) for name in getattr(model, field)]


class SplitConfig(_Frozen):
    """Held-out rows: random, or whole groups of the same reduced formula or chemical system; seeded."""

    kind: Literal["random", "composition", "chemsys"] = "composition"
    val_fraction: float = Field(0.1, gt=0, lt=1, description="early stopping and uncertainty recalibration")
    test_fraction: float = Field(0.0, ge=0, lt=1, description="never seen in training; metrics only")
    seed: int | None = Field(None, description="default: the training seed")

    @model_validator(mode="after")
    def _room_to_train(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave rows to train on")
        return self


class OptimiserConfig(_Frozen):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    grad_clip: float | None = Field(None, gt=0, description="clip each ensemble member's gradient norm")


class ScheduleConfig(_Frozen):
    """Learning rate per step: linear warm-up, then cosine decay to ``min_lr_factor * lr``, or constant."""

    name: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    min_lr_factor: float = Field(0.0, ge=0, le=1)


class BaselineConfig(_Frozen):
    """A physics baseline of one target (`mi.models.baseline`): the surrogate learns ``target - baseline`` and
    predicts ``baseline + its output``. ``intercalation_voltage``: the voltage of removing every extractable
    working ion, from `energy_model`'s `energy_column` (formation energy per atom) of both compositions."""

    kind: Literal["intercalation_voltage"] = "intercalation_voltage"
    target: str = "voltage_V"
    energy_model: str = Field("builtin:mp_stability", description="a checkpoint or builtin:<name>")
    energy_column: str = "formation_energy_eV_atom"


class TrainConfig(_Frozen):
    """How to train a surrogate: dataset, model, loss, split, optimiser, schedule, stopping, device."""

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: SurrogateModelConfig = Field(default_factory=MLPModelConfig)
    loss: Literal["l1", "mse", "robust_l1", "gaussian_nll"] = Field(
        "l1", description="robust_l1 (Laplace) and gaussian_nll add a heteroscedastic std head"
    )
    split: SplitConfig = Field(default_factory=SplitConfig)
    optimiser: OptimiserConfig = Field(default_factory=OptimiserConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=1)
    patience: int = Field(40, ge=1, description="stop a member after this many epochs without a better val score")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    amp: bool = Field(True, description="mixed precision when training on CUDA (bfloat16, else float16)")
    recalibrate: bool = Field(True, description="scale the predicted std to the validation errors")
    baseline: BaselineConfig | None = Field(None, description="learn the correction to a physics baseline")
    refit: bool = Field(
        False, description="a forest: fit again on the training and validation rows once the split has given "
        "the std scale, the std thresholds and the metrics, so the shipped model knows every chemical system"
    )

    @field_validator("model", mode="before")
    @classmethod
    def _mlp_by_default(cls, value: Any) -> Any:
        if isinstance(value, dict) and "kind" not in value:
            return {**value, "kind": "mlp"}
        return value

    @model_validator(mode="after")
    def _forest_has_no_std_head(self) -> TrainConfig:
        if self.model.kind == "forest" and self.loss in ("robust_l1", "gaussian_nll"):
            raise ValueError(f"loss {self.loss!r}: a forest has no std head (its std is the trees' spread)")
        if self.refit and self.model.kind != "forest":
            raise ValueError(f"refit: only a forest is refitted (fitted in one go); not a {self.model.kind}")
        return self


class ModelConfig(_Frozen):
    """The surrogate: a checkpoint to load (``builtin:<name>`` or a path), or a training recipe.

    With neither given, the embedded default (``builtin:formation_enthalpy``) is used.
    """

    checkpoint: str | None = None
    train: TrainConfig | None = None
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    columns: list[str] | None = Field(
        None, description="contribute only these targets of the model (another model predicts the rest)"
    )
    blend: bool = Field(
        False, description="a column this model shares with other blend entries is their average (mean of the "
        "means; std from the mean variance plus the spread of the means; in domain where every model is)"
    )

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


class SupplyConfig(_Frozen):
    """Thresholds of the supply flags (`mi.properties.supply`)."""

    min_mass_fraction: float = Field(
        0.01, ge=0, le=1, description="elements below this mass fraction raise no FEOC or concentration flag"
    )
    feoc_china_refining_pct: float = Field(
        50.0, ge=0, le=100, description="FEOC exposure: an element whose China refining share exceeds this"
    )
    crma_top_country_pct: float = Field(
        65.0, ge=0, le=100,
        description="CRMA benchmark: no more than 65% from one third country (Art. 5), at mining or at refining",
    )


class DemandConfig(_Frozen):
    """The market scenario of the 'demand' calculator (`mi.properties.demand`)."""

    twh_per_year: float = Field(5.5, gt=0, description="battery demand, TWh a year (5.5: the 2035 scale)")
    share: float = Field(1.0, gt=0, le=1, description="share of that market the chemistry would supply")


# Calculator groups (mi.properties.CALCULATORS and DERIVED, and a module each in mi.properties.groups): the
# properties stage checks the names (mi.properties.groups.check_names). 'energy', 'demand' and
# 'stability_window' use table columns (voltage, specific energy, formation enthalpy): they run after the surrogate.
CalculatorName = str


class PropertiesConfig(_Frozen):
    """Exact calculators run on every candidate."""

    working_ion: Literal["Li", "Na", "K", "Mg", "Ca", "Zn", "Al"] = "Li"
    calculators: list[CalculatorName] = Field(default_factory=lambda: ["density", "capacity", "cost"])
    element_table: str | None = Field(None, description="CSV that replaces the packaged element facts")
    capacity_mode: Literal["redox", "formula"] = Field(
        "redox",
        description="capacity_mAh_g: working ions the redox-active cations can release (redox) or every "
        "working ion in the formula (formula); both are also written as their own columns",
    )
    voltage_source: Literal["model", "oracle"] = Field(
        "model", description="'energy' reads voltage_V (the surrogate) or oracle_voltage_V (the oracle)"
    )
    voltage_column: str | None = Field(
        None, description="the column 'energy' reads the voltage from (default: by voltage_source)"
    )
    formation_energy_column: str = Field(
        "formation_enthalpy_eV_atom",
        description="the column 'stability_window' reads the formation energy per atom from (a model's target)",
    )
    supply: SupplyConfig = Field(default_factory=SupplyConfig)
    demand: DemandConfig = Field(default_factory=DemandConfig)

    @model_validator(mode="after")
    def _energy_needs_capacity(self) -> PropertiesConfig:
        if "energy" in self.calculators and "capacity" not in self.calculators:
            raise ValueError("calculator 'energy' needs 'capacity' in the same list (energy = capacity x voltage)")
        if "demand" in self.calculators and "energy" not in self.calculators:
            raise ValueError(
                "calculator 'demand' needs 'energy' (and 'capacity') in the same list (kg per kWh = mass fraction / "
                "specific energy)"
            )
        return self


# --- ranking ----------------------------------------------------------------------------------------


class Constraint(_Frozen):
    """Keep rows with ``min <= column <= max``.

    With ``probability: p`` the bounds apply to a predicted value with uncertainty: a row is kept when
    P(min <= X <= max) >= p for X ~ Normal(column, std_column), ``std_column`` defaulting to
    ``<column>_std``. ``{column: e_hull_eV_atom, max: 0.05, probability: 0.8}`` reads
    P(e_hull_eV_atom <= 0.05) >= 0.8.
    """

    column: str
    min: float | None = None
    max: float | None = None
    keep_missing: bool = Field(False, description="keep candidates whose value is missing (NaN)")
    probability: float | None = Field(None, gt=0, lt=1, description="required probability of meeting the bounds")
    std_column: str | None = Field(None, description="std of the column (default <column>_std); needs probability")
    required: bool = Field(True, description="false: skip the constraint, with a note, when the column is absent")

    @model_validator(mode="after")
    def _needs_a_bound(self) -> Constraint:
        if self.min is None and self.max is None:
            raise ValueError("a constraint needs 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        if self.std_column is not None and self.probability is None:
            raise ValueError("'std_column' is only used with 'probability'")
        return self

    @property
    def std(self) -> str:
        """The column holding the std of `column` (probabilistic constraints only)."""
        return self.std_column or f"{self.column}_std"


class Objective(_Frozen):
    column: str
    direction: Literal["max", "min"]
    weight: float = Field(1.0, ge=0)
    normalise: Literal["minmax", "rank", "zscore"] = "minmax"
    required: bool = Field(True, description="false: skip the objective, with a note, when the column is absent")


class RankingConfig(_Frozen):
    constraints: list[Constraint] = Field(default_factory=list)
    objectives: list[Objective] = Field(min_length=1)
    top_k: int = Field(10, ge=1)
    ucb_kappa: float | None = Field(
        None, ge=0, description="adds ucb_score: the score of mean + kappa * std (optimistic, for exploration)"
    )
    sort_by: Literal["score", "ucb_score"] = "score"
    out_of_domain: Literal["penalize", "drop", "keep"] = Field(
        "penalize",
        description="a predicted objective value outside its model's domain (<column>_in_domain false): scored "
        "as the worst (penalize), the row removed (drop), or used as it is (keep)",
    )

    @model_validator(mode="after")
    def _ucb_needs_kappa(self) -> RankingConfig:
        if self.sort_by == "ucb_score" and self.ucb_kappa is None:
            raise ValueError("sort_by: ucb_score needs ucb_kappa")
        return self


# --- export -----------------------------------------------------------------------------------------


class ExportConfig(_Frozen):
    out_dir: str = Field("../experiments", description="runs go to <out_dir>/<name>/<run-id>/")
    top_cif: bool = True
    write_json: bool = True
    report: bool = Field(True, description="report.html and passport/<id>.json for the top-k candidates")


# --- execution --------------------------------------------------------------------------------------


class ExecutionConfig(_Frozen):
    """Where and in what pieces a screen runs (`mi.execution`); the ranked output does not depend on it."""

    backend: Literal["local", "ray"] = Field("local", description="local: this machine; ray: a Ray cluster")
    chunk_size: int = Field(10_000, ge=1, description="candidates per chunk (one task, one Parquet shard)")
    workers: int | Literal["auto"] = Field(
        "auto", description="local: processes screening chunks (1 = in this process; auto = one per core, at most "
        "8, in this process when there is one chunk only); "
        "ray: chunks in flight at once (auto = the cluster's CPUs)"
    )
    address: str | None = Field(
        None, description="ray: cluster address; 'auto' joins a running cluster; null: RAY_ADDRESS, else a local Ray"
    )
    num_gpus: float = Field(0.0, ge=0, description="ray: GPUs per chunk task (fractions share a GPU)")
    max_rows_in_memory: int = Field(
        500_000, ge=1, description="up to this many ranked rows the merge ranks them all at once (every row in "
        "ranked.csv); above it, it streams over the shards and keeps the top-k and the Pareto front"
    )

    @field_validator("workers")
    @classmethod
    def _workers_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("workers must be 1 or more, or 'auto'")
        return value


# --- refinement (the funnel, `mi.refine`) ------------------------------------------------------------


class RefineConfig(_Frozen):
    """`refine:` after ranking, the oracle relaxes the best candidates and the ranking uses its values."""

    oracle: str = Field("chgnet", description="a registered oracle (mi.oracle.registry)")
    model: str = Field("0.3.0", description="oracle model version (CHGNet: weights that ship in its wheel)")
    top_k: int = Field(10, ge=1, description="candidates sent to the oracle")
    select: Literal["score", "ucb_score", "pareto"] = Field(
        "score", description="which: the best by score, by ucb_score, or by Pareto rank (then rank)"
    )
    max_per_formula: int | None = Field(
        1, ge=1, description="selected rows per composition at most (orderings of one composition share the "
        "composition surrogate's values); null = no cap"
    )
    relax: bool = Field(True, description="relax cell and positions; false: single points of the input cells")
    voltage: bool = Field(True, description="oracle voltage from the relaxed delithiated counterpart")
    extract_fraction: float = Field(
        1.0, gt=0, le=1, description="fraction of the redox-extractable working ions removed for the voltage "
        "(0.5: e.g. Li0.5CoO2, the accessible range of LiCoO2; the cell is doubled when needed)"
    )
    references: str = Field(
        "mp_bundled", description="hull references: mp_bundled, oracle_elements, or a JSON file of ComputedEntry dicts"
    )
    fmax: float = Field(0.1, gt=0, description="relaxation stops below this max force, eV/A")
    max_steps: int = Field(300, ge=0, description="FIRE steps at most per relaxation (then unconverged)")
    time_limit_s: float | None = Field(
        300.0, gt=0, description="wall time of one relaxation of a cell of atoms_per_limit atoms; larger cells "
        "get proportionally more; null = none"
    )
    atoms_per_limit: int = Field(32, ge=1, description="cell size time_limit_s is meant for")
    scale_with_load: bool = Field(
        True, description="multiply the time limit by the machine's load per core when above 1 (a busy machine)"
    )
    max_memory_mb: float | None = Field(4096.0, gt=0, description="memory one relaxation may add; beyond it, a failure")
    disagreement_sigma: float = Field(
        3.0, gt=0, description="flag |oracle - surrogate| beyond this many std (the surrogate's and the oracle's "
        "own error, in quadrature)"
    )
    oracle_std: dict[str, float] = Field(
        default_factory=lambda: {"formation_energy_eV_atom": 0.03, "e_hull_eV_atom": 0.03},
        description="the oracle's own error per ranked column, against the data the surrogate learned from: CHGNet "
        "0.3.0 errs 29 meV/atom on MPtrj's test energies (its README), which the MP-trained surrogates learned; "
        "0 for a column the surrogate learned from the oracle itself (builtin:voltage: CHGNet voltages)"
    )
    chunk_size: int = Field(4, ge=1, description="candidates per refine chunk (each written atomically; --resume skips them)")
    device: Literal["auto", "cpu", "cuda", "mps"] = "cpu"
    cache_dir: str | None = Field(
        "auto", description="elemental-reference cache; auto = $XDG_CACHE_HOME/mi/oracle_references"
    )


# --- the experiment ---------------------------------------------------------------------------------


class ScreenConfig(_FileConfig):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    candidates: CandidatesConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig | None = None
    models: list[ModelConfig] = Field(
        default_factory=list, description="more surrogates beside 'model', each contributing its columns"
    )
    properties: PropertiesConfig = Field(default_factory=PropertiesConfig)
    ranking: RankingConfig
    export: ExportConfig = Field(default_factory=ExportConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    refine: RefineConfig | None = Field(None, description="the funnel: oracle relaxations of the best (off when absent)")
    # The folder relative paths are resolved against; set by the loader, never read from YAML.

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        # Neither 'model' nor 'models': the embedded default model (ModelConfig's default checkpoint).
        if isinstance(data, dict) and data.get("model") is None and not data.get("models"):
            return {**data, "model": {}}
        return data

    def model_entries(self) -> list[tuple[str, ModelConfig]]:
        """(config key path, entry) of every surrogate: 'model' first, then 'models[i]'."""
        entries = [("model", self.model)] if self.model is not None else []
        return entries + [(f"models[{i}]", m) for i, m in enumerate(self.models)]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def hash(self) -> str:
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


class TrainRunConfig(_FileConfig):
    """`mi train CONFIG`: a dataset, a recipe and where the checkpoint goes."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: str = Field(description="output path of the checkpoint; relative to the config file")
    card: dict[str, str] = Field(
        default_factory=dict,
        description="written into the checkpoint's card (mi info): description, licence, attribution of the data",
    )
    run_dir: str | None = Field(
        None, description="metrics.csv, resume.pt and the resolved config (default: <checkpoint>.run/ beside it)"
    )


# --- active learning (`mi loop`) ---------------------------------------------------------------------


class LoopPoolConfig(_Frozen):
    """The candidates the loop may label: a candidates section (files, folders, generators) or a dataset
    (ids = the table's ``id`` column or row positions, as a table labeller reads them)."""

    candidates: CandidatesConfig | None = None
    dataset: DatasetConfig | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> LoopPoolConfig:
        if (self.candidates is None) == (self.dataset is None):
            raise ValueError("give exactly one of 'candidates' or 'dataset'")
        return self


class LoopInitialConfig(_Frozen):
    """The first labelled set: a table of labelled rows, or `n_random` seeded picks from the pool."""

    labelled: str | None = Field(
        None, description="table with id, formula and the labeller's target columns; relative to the config file"
    )
    n_random: int | None = Field(None, ge=2, description="pool candidates picked at random (seeded) and labelled")

    @model_validator(mode="before")
    @classmethod
    def _random_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("labelled") is None and data.get("n_random") is None:
            return {**data, "n_random": 20}
        return data

    @model_validator(mode="after")
    def _not_both(self) -> LoopInitialConfig:
        if self.labelled is not None and self.n_random is not None:
            raise ValueError("give either 'labelled' or 'n_random', not both")
        return self


class TableLabellerConfig(_Frozen):
    """Labels read from a table computed elsewhere (`mi.oracle.table.TableLabeller`)."""

    kind: Literal["table"] = "table"
    path: str = Field(description="CSV, JSON, extended XYZ or ASE db; relative to the config file")
    targets: dict[str, str] = Field(min_length=1, description="target name -> column")
    units: dict[str, str] = Field(default_factory=dict)
    match: Literal["id", "formula"] = Field("id", description="look candidates up by id or by reduced formula")
    formula_column: str = "formula"
    duplicates: Literal["min", "mean", "first"] = Field("min", description="match: formula, several rows per formula")


class OracleLabellerConfig(_Frozen):
    """Labels computed by an oracle of the registry (`mi.oracle.registry`), set up as in `mi label`: the same
    ``oracle:`` and ``labels:`` sections (`mi.oracle.run.build_labeller`)."""

    kind: Literal["oracle"] = "oracle"
    oracle: OracleConfig = Field(default_factory=lambda: OracleConfig())
    labels: LabelTargetsConfig = Field(default_factory=lambda: LabelTargetsConfig())


LabellerConfig = Annotated[TableLabellerConfig | OracleLabellerConfig, Field(discriminator="kind")]


class AcquisitionConfig(_Frozen):
    """How the next batch is picked (`mi.ranking.acquisition`)."""

    kind: Literal["greedy", "ucb", "ei", "random"] = "ucb"
    kappa: float = Field(1.0, ge=0, description="ucb: score of mean + kappa * std")
    xi: float = Field(0.0, ge=0, description="ei: improvement counted above best score + xi")


class LoopConfig(_FileConfig):
    """`mi loop CONFIG`: rank the pool with the surrogate, label a batch, retrain, repeat."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    pool: LoopPoolConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    initial: LoopInitialConfig = Field(default_factory=LoopInitialConfig)
    train: TrainConfig = Field(default_factory=TrainConfig, description="the surrogate's recipe; no 'dataset'")
    labeller: LabellerConfig
    acquisition: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    objectives: list[Objective] = Field(min_length=1)
    constraints: list[Constraint] = Field(default_factory=list, description="picked first: rows within them")
    good: list[Constraint] = Field(
        default_factory=list, description="what counts as a discovery, applied to the labels (n_good in the log)"
    )
    batch_size: int = Field(10, ge=1)
    rounds: int = Field(5, ge=1)
    seed: int = 0
    out_dir: str = Field("../experiments", description="the loop writes to <out_dir>/<name>/ (or --out)")

    @field_validator("train")
    @classmethod
    def _no_dataset(cls, value: TrainConfig) -> TrainConfig:
        if "dataset" in value.model_fields_set:
            raise ValueError("the loop trains on its labelled set: leave 'dataset' out of train")
        return value

    @model_validator(mode="after")
    def _columns_are_targets(self) -> LoopConfig:
        if self.labeller.kind != "table":
            return self  # an oracle's targets are known once it is built; the loop checks them then
        targets = set(self.labeller.targets)
        for field_name, items in (("objectives", self.objectives), ("constraints", self.constraints), ("good", self.good)):
            for i, item in enumerate(items):
                if item.column not in targets:
                    raise ValueError(
                        f"{field_name}[{i}].column: {item.column!r} is not a labeller target "
                        f"({', '.join(sorted(targets))})"
                    )
        return self


# --- oracle labels (`mi label`) ---------------------------------------------------------------------


class OracleConfig(_Frozen):
    """The energy oracle (`mi.oracle.registry`) and its relaxation settings."""

    name: str = Field("chgnet", description="a registered oracle (mi.oracle.registry)")
    model: str = Field("0.3.0", description="model version (CHGNet: weights that ship in its wheel)")
    fmax: float = Field(0.1, gt=0, description="relaxation stops below this max force, eV/A")
    max_steps: int = Field(300, ge=0, description="FIRE steps at most per structure (then unconverged)")
    time_limit_s: float | None = Field(120.0, gt=0, description="wall time per structure; beyond it, a failure")
    max_memory_mb: float | None = Field(4096.0, gt=0, description="memory one relaxation may add; beyond it, a failure")
    relax_cell: bool = True
    batch_size: int = Field(16, ge=1, description="structures per batch of single points")
    device: Literal["auto", "cpu", "cuda", "mps"] = "cpu"


class LabelTargetsConfig(_Frozen):
    """What the labels are measured against (`mi.oracle.label.OracleLabeller`)."""

    references: Literal["mp_bundled", "entries", "oracle_elements"] = Field(
        "mp_bundled", description="hull reference set: pymatgen's bundled MP entries (MP2020), a file, or the oracle's elements"
    )
    entries_file: str | None = Field(None, description="references: entries; JSON list of ComputedEntry dicts")
    working_ion: Literal["Li", "Na", "K", "Mg", "Ca", "Zn", "Al"] = "Li"
    voltage: bool = Field(True, description="average voltage from the relaxed delithiated counterpart")
    cache_dir: str | None = Field(
        "auto", description="elemental-reference cache; auto = $XDG_CACHE_HOME/mi/oracle_references"
    )

    @model_validator(mode="after")
    def _entries_need_file(self) -> LabelTargetsConfig:
        if self.references == "entries" and not self.entries_file:
            raise ValueError("references: entries needs entries_file")
        return self


class LabelOutputConfig(_Frozen):
    dir: str = Field("../labels", description="labels.json, failures.csv, manifest.json and chunks/")
    chunk_size: int = Field(16, ge=1, description="candidates per chunk (each written atomically; --resume skips them)")


class LabelConfig(_FileConfig):
    """`mi label CONFIG`: label candidates with an oracle into a dataset `mi train` reads."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    candidates: CandidatesConfig
    oracle: OracleConfig = Field(default_factory=OracleConfig)
    labels: LabelTargetsConfig = Field(default_factory=LabelTargetsConfig)
    output: LabelOutputConfig = Field(default_factory=LabelOutputConfig)

    def hash(self) -> str:
        payload = json.dumps(self.model_dump(mode="json", exclude={"output"}), sort_keys=True)
        return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


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
            if node.get(part) is None:  # absent, or a section switched off with null (refine: null)
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
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
    for key in ("base_dir", "source"):  # set by the loader
        if key in data:
            raise ConfigError(f"{path}: {key}: unknown key")
    return data


def _load(model: type[_Frozen], path: str | Path, overrides: list[str] | tuple[str, ...]):
    path = Path(path)
    data = _read_yaml(path)
    for text in overrides:
        parts, value = parse_override(text)
        _apply_override(data, parts, value, text)
    try:
        return model.model_validate({**data, "base_dir": str(path.resolve().parent), "source": str(path)})
    except ValidationError as exc:
        lines = [f"{path}: {_key_path(e['loc'])}: {_describe(e)}" for e in exc.errors()]
        raise ConfigError("invalid config\n  " + "\n  ".join(lines)) from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ScreenConfig:
    """Read a screening config, apply ``--set`` overrides, and validate it."""
    return _load(ScreenConfig, path, overrides)


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainRunConfig:
    """Read a `mi train` config."""
    return _load(TrainRunConfig, path, overrides)


def load_generate_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> GenerateRunConfig:
    """Read a `mi generate` config."""
    return _load(GenerateRunConfig, path, overrides)


def load_loop_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoopConfig:
    """Read a `mi loop` config."""
    return _load(LoopConfig, path, overrides)


def load_label_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LabelConfig:
    """Read a `mi label` config."""
    return _load(LabelConfig, path, overrides)
