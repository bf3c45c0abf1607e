"""Run configuration: one dataclass tree, loaded from a YAML preset plus dotted overrides.

    cfg = load_config("hmdb51", ["model.streams=[sa]", "optim.epochs=5"])

Presets ship in attnet/presets/<name>.yaml (more folders: $ATTNET_PRESET_PATH); a preset may
name a `base` preset it refines, and Python modules to `imports` first (a study's backbone,
registered from outside the package, as mmaction2's custom_imports). Unknown keys, wrong
types and impossible values are rejected naming the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from attnet.data import DATASETS
from attnet.files import write_text
from attnet.models import BACKBONES, STREAMS, TEMPORAL_MODELS
from attnet.optim import OPTIMIZERS, SCHEDULES

CONFIG_DIR = Path(__file__).resolve().parent / "presets"
PRESET_PATH = "ATTNET_PRESET_PATH"     # more preset folders (os.pathsep-separated), searched after CONFIG_DIR


class ConfigError(ValueError):
    """A bad preset, override or value; the message names the key (and file:line for YAML)."""


@dataclass
class DataConfig:
    name: str = "synthetic"             # a name of attnet.data.DATASETS
    root: str = "data/synthetic"
    split: int = 1                      # UCF101 / HMDB51 split 1..3
    segments: int = 12                  # T: one frame per segment
    size: int = 224                     # crop size
    resize: int | None = None           # shorter side before cropping (default size * 256 / 224)
    num_clips: int = 10                 # test clips per video (scores averaged)
    three_crop: bool = False
    hflip: bool = True                  # training flip; off where mirroring changes the class
    batch_size: int = 30                # the global batch: each of W processes takes batch_size / W
    eval_batch_size: int | None = None  # videos per evaluation step and process (default: the training
                                        # batch per process // the subset's clips per video, at least 1)
    workers: int = 4
    train_list: str | None = None       # "list" datasets: list files (default <root>/<subset>.txt; "{root}", "{split}" filled in)
    val_list: str | None = None
    test_list: str | None = None
    frame_template: str = "img_{:05d}.jpg"
    frame_start: int = 1
    on_bad_video: str = "error"         # error | skip
    cache: bool = False                 # decode each video once into <root>/.decoded/ (.npy, memory-mapped after)
    val_fraction: float = 0.1           # no validation list (UCF101, HMDB51, a list without one): held out of the training list (0: none, test the last epoch)
    select_on_test: bool = False        # no validation list: the authors' protocol, best epoch chosen on the test list
    synthetic: dict = field(default_factory=dict)   # generator arguments (attnet.data.synthetic.generate)


@dataclass
class ModelConfig:
    backbone: str = "resnet34"          # a name of attnet.models.BACKBONES
    pretrained: str | None = "imagenet"  # None | imagenet | path to a backbone state dict
    streams: list[str] = field(default_factory=lambda: ["gp", "sa", "la"])   # the full model
    fusion_layer: bool = True
    temporal: str = "sru"               # a name of attnet.models.TEMPORAL_MODELS
    hidden_size: int = 1024
    num_layers: int = 3
    dropout: float = 0.5
    score_fusion: str = "logits"        # logits (authors' code) | probs (paper text)
    ga_reg: bool = True
    ga_margin: float = 0.1
    ga_detach_gp: bool = False          # true: p_GP is a fixed reference in the GA hinge (paper text); false: authors' code
    init_checkpoint: str | None = None  # transfer: our run's .pt or the authors' .pkl; heads replaced
    channels_last: bool = True


@dataclass
class OptimConfig:
    name: str = "sgd"                   # a name of attnet.optim.OPTIMIZERS: sgd (the authors') | adamw
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-5
    epochs: int = 18
    schedule: str = "cosine"            # a name of attnet.optim.SCHEDULES: cosine (the authors') | constant
    clip_grad: float | None = None      # max gradient norm
    amp: str = "off"                    # autocast on CPU and CUDA: auto (bf16 where native) | bf16 | fp16 | off


@dataclass
class RunConfig:
    name: str | None = None             # default: derived from preset, streams, temporal and seed
    out_dir: str = "results/runs"
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    threads: int | None = None          # torch CPU threads (None: torch's choice); parallel ablations use 1
    eval_every: int = 1
    log_every: int = 20
    resume: bool = False                # continue from checkpoints/last.pt; a finished run is returned as is
    overwrite: bool = False             # replace an existing run directory
    tensorboard: bool = True            # rank 0's TensorBoard events in <run>/tensorboard/ (`make tensorboard`)


@dataclass
class Budget:
    seeds: int = 5                      # paired seeds 0..seeds-1 of every ablation row (and of 07 / 08)
    jobs: int | None = None             # runs trained at once; None: 2 on a multi-core CPU, GPUs x jobs_per_gpu
    jobs_per_gpu: int = 1               # runs sharing one GPU, each worker seeing only its own


@dataclass
class SlurmBudget:
    """One SLURM job per run (`attnet reproduce --executor slurm`); flags of the same names win."""
    partition: str | None = None        # None: the cluster's default partition
    account: str | None = None
    time: int = 1440                    # minutes per job; a job that runs out is requeued and resumes
    gpus: int = 1                       # GPUs per job
    cpus: int | None = None             # CPU cores per job; None: data.workers + 2


@dataclass
class ReproduceConfig:
    """What `attnet reproduce` trains when not told otherwise, by the kind of device it finds: a GPU
    affords more paired seeds than a 2-core CPU (narrower intervals, the same runs)."""
    cpu: Budget = field(default_factory=Budget)
    cuda: Budget = field(default_factory=Budget)
    slurm: SlurmBudget = field(default_factory=SlurmBudget)


@dataclass
class LaunchConfig:
    """How a run was launched, recorded by training (not a setting): a resume or a finished run
    is compared with it."""
    world_size: int = 1                 # processes (GPUs) of the run
    device_batch_size: int | None = None  # data.batch_size / world_size


@dataclass
class Config:
    preset: str = "custom"
    imports: list[str] = field(default_factory=list)   # modules imported before validation (they register parts)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    reproduce: ReproduceConfig = field(default_factory=ReproduceConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def run_name(self) -> str:
        return self.run.name or run_name(self.preset, self.model, self.run.seed)


# The model settings an ablation row may change (attnet.ablation); each shows in the run name
# when it differs from ModelConfig's default, so the full model's name carries none of them.
def run_name(preset: str, model: ModelConfig, seed: int = 0, amp: str | None = None) -> str:
    """<preset>_<streams>_<temporal>[_nofusion][_noga][_gadetach][_<precision>]_seed<N>: the registry name of a
    configuration; the precision appears only when an ablation sets optim.amp against the preset's."""
    parts = [preset, "+".join(model.streams), model.temporal] + ([] if model.fusion_layer else ["nofusion"])
    parts += ([] if model.ga_reg else ["noga"]) + (["gadetach"] if model.ga_detach_gp else [])
    parts += [{"off": "fp32"}.get(amp, amp)] if amp else []
    return "_".join(parts + [f"seed{seed}"])


# Names of things built elsewhere are read from the registries where they are built, so a new
# backbone, temporal model or dataset is valid here (and listed in `--help`) as soon as it exists.
CHOICES = {
    "data.name": DATASETS,
    "data.on_bad_video": ("error", "skip"),
    "model.backbone": BACKBONES,
    "model.temporal": TEMPORAL_MODELS,
    "model.score_fusion": ("logits", "probs"),
    "optim.name": OPTIMIZERS,
    "optim.schedule": SCHEDULES,
    "optim.amp": ("auto", "bf16", "fp16", "off"),
}
POSITIVE = ("data.segments", "data.size", "data.num_clips", "data.batch_size", "data.eval_batch_size",
            "model.hidden_size", "model.num_layers", "optim.lr", "optim.epochs", "run.eval_every", "run.log_every",
            "run.threads")
NON_NEGATIVE = ("data.workers", "data.frame_start", "optim.momentum", "optim.weight_decay", "model.ga_margin")


def presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """The value converted to the field's type, or a ConfigError naming the key."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_type(key, value, inner)
    if origin is list:
        if not isinstance(value, list):
            value = [value] if isinstance(value, str) else value
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_check_type(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):      # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is dict and isinstance(value, dict):
        return value
    if hint is str and isinstance(value, bool):        # YAML 1.1 reads an unquoted off / on as a boolean
        return "on" if value else "off"
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def _apply(obj: Any, values: dict, prefix: str = "", source: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (known: {', '.join(names)})"
            raise ConfigError(f"{source}unknown config key '{key}'{hint}")
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}{key}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(current))}")
            _apply(current, value, f"{key}.", source)
        else:
            try:
                setattr(obj, name, _check_type(key, value, hints[name]))
            except ConfigError as err:
                raise ConfigError(f"{source}{err}") from None


def flat_config(data: dict, prefix: str = "") -> dict[str, Any]:
    """A config's dict (to_dict(), a run's config.yaml) as {"section.key": value}; data.synthetic,
    the generator's arguments, stays one value."""
    if isinstance(data, dict) and prefix != "data.synthetic.":
        return {k: v for key, sub in data.items() for k, v in flat_config(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: data}


def validate(cfg: Config) -> Config:
    """Reject impossible values, naming the key."""
    flat = flat_config(cfg.to_dict())
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key}: {flat[key]!r} is not one of {', '.join(allowed)}")
    for key in POSITIVE:
        if flat[key] is not None and flat[key] <= 0:
            raise ConfigError(f"{key}: must be > 0, got {flat[key]}")
    for key in NON_NEGATIVE:
        if flat[key] < 0:
            raise ConfigError(f"{key}: must be >= 0, got {flat[key]}")
    streams = cfg.model.streams
    if not streams or any(s not in STREAMS for s in streams) or len(set(streams)) != len(streams):
        raise ConfigError(f"model.streams: must be a non-empty subset of [{', '.join(STREAMS)}] without repeats, "
                          f"got {streams}")
    for kind, budget in asdict(cfg.reproduce).items():
        for key, value in budget.items():
            if isinstance(value, (int, float)) and value <= 0:
                raise ConfigError(f"reproduce.{kind}.{key}: must be > 0, got {value}")
    if not 0 <= cfg.model.dropout < 1:
        raise ConfigError(f"model.dropout: must be in [0, 1), got {cfg.model.dropout}")
    if cfg.data.split not in (1, 2, 3):
        raise ConfigError(f"data.split: must be 1, 2 or 3, got {cfg.data.split}")
    if not 0 <= cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction: must be in [0, 1), got {cfg.data.val_fraction}")
    return cfg


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a preset must be a mapping of data/model/optim/run sections")
    return data


def _preset_file(name: str) -> Path:
    """attnet/presets/<name>.yaml, else the first <folder>/<name>.yaml of $ATTNET_PRESET_PATH (which
    `attnet reproduce --preset my.yaml` sets, so that its notebooks load the file by name)."""
    folders = [CONFIG_DIR] + [Path(d) for d in os.environ.get(PRESET_PATH, "").split(os.pathsep) if d]
    files = (d / f"{name}{suffix}" for d in folders for suffix in (".yaml", ".yml"))
    return next((f for f in files if f.is_file()), CONFIG_DIR / f"{name}.yaml")


def _preset_chain(preset: str | Path, seen: tuple = ()) -> list[tuple[Path, dict]]:
    path = Path(preset) if str(preset).endswith((".yaml", ".yml")) else _preset_file(preset)
    if not path.is_file():
        raise ConfigError(f"unknown preset {str(preset)!r}: choose from {', '.join(presets())} or give a .yaml path")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base in seen:
        raise ConfigError(f"{path}: 'base' presets form a cycle through {base!r}")
    return (_preset_chain(base, seen + (base,)) if base else []) + [(path, data)]


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. optim.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML; quote it for YAML inside the shell's "
                          f"quotes: \"{key.strip()}='{raw}'\"") from None
    return key.strip(), value


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """cfg with dotted overrides ("optim.epochs=5") applied, validated."""
    for text in overrides:
        key, value = parse_override(text)
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        _apply(cfg, nested, source=f"override {text!r}: ")
    return validate(cfg)


def import_modules(modules: Sequence[str], source: str = "") -> None:
    """Import a preset's `imports` (they register backbones, streams, datasets ...)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"{source}imports: cannot import {name!r} ({err}); run from the folder that holds it "
                              "or add that folder to PYTHONPATH") from None


def load_config(preset: str | Path, overrides: Sequence[str] = ()) -> Config:
    """The preset (and its bases) with the dotted overrides applied, validated."""
    cfg = Config(preset=Path(preset).stem)
    for path, data in _preset_chain(preset):
        _apply(cfg, data, source=f"{path}: ")
        import_modules(cfg.imports, source=f"{path}: ")
    return apply_overrides(cfg, overrides)


def config_from_dict(data: dict) -> Config:
    """A Config from `to_dict()` output (e.g. a run's config.yaml)."""
    import_modules(data.get("imports") or [])
    cfg = Config()
    _apply(cfg, data)
    return validate(cfg)


def derived_preset(preset: str | Path, tag: str, changes: dict, folder: str | Path) -> Path:
    """Write <folder>/<preset>-<tag>.yaml (base: preset, then `changes`, {section: {key: value}})
    atomically and return its path: a preset of its own name, so its runs have their own names."""
    path = Path(folder) / f"{load_config(preset).preset}-{tag}.yaml"
    write_text(path, yaml.safe_dump({"base": str(preset), **changes}, sort_keys=False))
    return path.resolve()


def describe() -> str:
    """Every override key with its default and, where a registry holds them, its choices, for --help."""
    lines = []
    for section in ("data", "model", "optim", "run"):
        for f in dataclasses.fields(getattr(Config(), section)):
            key = f"{section}.{f.name}"
            allowed = CHOICES.get(key, STREAMS if key == "model.streams" else None)
            lines.append(f"  {key}={getattr(getattr(Config(), section), f.name)!r}"
                         + (f"  ({' | '.join(allowed)})" if allowed else ""))
    return "\n".join(lines)
