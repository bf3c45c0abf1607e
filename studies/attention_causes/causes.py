"""Why does the learned attention not find the actor? One experiment per candidate cause.

Each experiment is the full model with ONE change (CAUSES), trained over the same seeds as the
unchanged full model (the reference) through `run_ablation`. Changes that an ablation spec can
express (fusion layer, GA detach) run on the preset itself; the others (backbone, pretrained
backbone, dataset, epochs) on a derived preset <preset>-<tag>.yaml (attnet.config.derived_preset)
under <results_dir>/presets/, so their runs have names of their own. For every run: test top-1,
and for SA and LA the attention mass inside the actor's box and the pointing game on the test
set (attnet.localization); `causes_table` gives means over seeds with 95 % t-intervals and the
paired difference to the reference in mass-in-box, with a call only where its interval
excludes 0. Uniform attention (what GP does) is the floor, the oracle stream (weights = the
box's coverage of each cell) the ceiling. The scores are kept beside each run (localization.json,
attention_bounds.json), so that a clone, which has no checkpoints, reuses the runs a
reproduction scored; a reused run that has neither stops the call before any training.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from attnet.ablation import ABLATIONS, REFERENCE, ablation_run_name, run_ablation
from attnet.config import Config, derived_preset, load_config
from attnet.data import synthetic
from attnet.engine import runtime
from attnet.engine.build import build_datasets, dataset_root
from attnet.experiments import finished_run, oracle_model
from attnet.files import save_atomic, write_text
from attnet.localization import localization_scores, mass_in_box, pointing_hit, uniform_baseline
from attnet.models import build_backbone
from attnet.models.attention import box_coverage
from attnet.tables import paired_table
from attnet.viz import save_figure

FULL = ABLATIONS[REFERENCE]          # the full model's spec: every experiment changes one thing of it
PATCH = "studies.attention_causes.patch"   # registers the `patch` backbone


@dataclass(frozen=True)
class Cause:
    tag: str                    # names the derived preset (<preset>-<tag>) and so the runs
    change: str                 # what differs from the full model
    question: str               # what the experiment answers
    spec: dict = field(default_factory=dict)     # run_ablation keys set on top of the full model
    # the derived preset's sections, from the preset's config and the context (data_root, epochs, pretrained)
    preset: Callable[[Config, dict], dict] | None = None


CAUSES: dict[str, Cause] = {
    "receptive field": Cause(
        "patch", "backbone `patch`: a stride-16 patchify conv then 1x1 layers, so no two map cells see a common pixel",
        "Does the tiny backbone's receptive field (every cell sees most of the frame) leave nothing local to attend to?",
        preset=lambda cfg, ctx: {"imports": [PATCH], "model": {"backbone": "patch"}}),
    "object-aware features": Cause(
        "objpre", "the tiny backbone pretrained on the training frames to predict each cell's actor-box coverage",
        "Would object-aware features (here: pretrained to find the actor) let the streams localize?",
        preset=lambda cfg, ctx: {"model": {"pretrained": ctx["pretrained"]}}),
    "g redundancy": Cause(
        "nofusion", "model.fusion_layer=false: the attention streams see v alone, not [g ; v]",
        "Does g in the fusion layer carry the class, leaving v (and so the attention) free to be anywhere?",
        spec={"fusion_layer": False}),
    "GA gradient into GP": Cause(
        "gadetach", "model.ga_detach_gp=true: p_GP is a fixed reference in the GA hinge",
        "Is the GA hinge met by pushing p_GP down rather than by attention finding the actor?",
        spec={"ga_detach_gp": True}),
    "lighting cue": Cause(
        "nolight", "the dataset lit evenly (synthetic lighting=false): an object's colour no longer tells its position",
        "Does the lighting cue let pooled colour solve the task, so attention is not needed?",
        preset=lambda cfg, ctx: {"data": {"root": f"{ctx['data_root'] or cfg.data.root}-nolight",
                                          "synthetic": {**cfg.data.synthetic, "lighting": False}}}),
    "training budget": Cause(
        "x3epochs", "3x the preset's epochs",
        "Has attention just not had the time to localize?",
        preset=lambda cfg, ctx: {"optim": {"epochs": 3 * ctx["epochs"]}}),
}

STREAMS = ("sa", "la")


def _merge(*changes: dict) -> dict:
    """Preset sections merged key by key, later changes winning."""
    out: dict = {}
    for change in changes:
        for section, values in change.items():
            out[section] = {**out.get(section, {}), **values} if isinstance(values, dict) else values
    return out


def pretrain_coverage(preset: str, out_file: str | Path, data_root: str | None = None, epochs: int = 4,
                      seed: int = 0, lr: float = 3e-3, batch_size: int = 8, device: str = "auto",
                      resume: bool = True) -> dict:
    """Pretrain the preset's backbone on the TRAIN split to predict, per map cell, the fraction
    of it the actor's box covers (the oracle's target; binary cross-entropy through a 1x1 conv
    head), save the backbone's plain state dict to `out_file` (model.pretrained takes it) and
    return the pretraining's own result: the training loss of the first and last epoch and, on
    the VALIDATION split, the mass in the box and the pointing game of the predicted coverage
    map (normalized), beside uniform attention. A finished pretraining (out_file and its .json)
    of the same epochs and seed is reused when `resume`."""
    out_file = Path(out_file)
    report_file = out_file.with_suffix(".json")
    if resume and out_file.is_file() and report_file.is_file():
        report = json.loads(report_file.read_text())
        if (report["epochs"], report["seed"]) == (epochs, seed):
            return report
    # the oracle's configuration: dataset items carry the actor boxes of the sampled frames
    cfg = load_config(preset, ["model.streams=[gp,oracle]"] + ([f"data.root={data_root}"] if data_root else []))
    rt = runtime.start(device, "off", None, seed)
    sets = build_datasets(cfg, ("train", "val"), dataset_root(cfg, rt))
    rt.seed_model()                       # the head's and backbone's initial weights, then the frame draws
    backbone = build_backbone(cfg.model.backbone).to(rt.device)
    head = nn.Conv2d(backbone.out_channels, 1, 1).to(rt.device)
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=lr)
    loader = torch.utils.data.DataLoader(sets["train"], batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))

    def coverage_logits(clips: torch.Tensor) -> torch.Tensor:         # [B, T, 3, H, W] -> [B*T, h, w]
        return head(backbone(clips.flatten(0, 1).to(rt.device)))[:, 0]

    losses = []
    for _ in range(epochs):
        backbone.train(), head.train()
        total, count = 0.0, 0
        for clips, _, boxes in loader:
            logits = coverage_logits(clips)
            target = box_coverage(boxes.flatten(0, 1).to(rt.device), logits.shape[-2:], clips.shape[-2:])
            loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(clips), count + len(clips)
        losses.append(total / count)
    backbone.eval(), head.eval()
    rows = []
    with torch.no_grad():
        for clips, _, boxes in torch.utils.data.DataLoader(sets["val"], batch_size=batch_size):
            maps = torch.sigmoid(coverage_logits(clips)).cpu()
            maps = (maps / maps.sum(dim=(1, 2), keepdim=True)).numpy()
            for a, box in zip(maps, boxes.flatten(0, 1).numpy()):
                if box[2] > box[0] and box[3] > box[1]:
                    size = tuple(clips.shape[-2:])
                    rows.append((mass_in_box(a, box, size), pointing_hit(a, box, size),
                                 *uniform_baseline(a.shape, box, size)))
    mass, hit, uniform_mass, uniform_hit = (100 * float(np.mean(column)) for column in zip(*rows))
    save_atomic(backbone.cpu().state_dict(), out_file)
    report = {"file": str(out_file), "backbone": cfg.model.backbone, "epochs": epochs, "seed": seed,
              "train_videos": len(sets["train"]), "loss_first_epoch": losses[0], "loss_last_epoch": losses[-1],
              "val_frames": len(rows), "val_mass_in_box": mass, "val_pointing": hit,
              "uniform_mass_in_box": uniform_mass, "uniform_pointing": uniform_hit}
    write_text(report_file, json.dumps(report, indent=1))   # written last: marks a finished pretraining
    return report


def _scores(scores: pd.DataFrame) -> dict:
    """Per stream of localization_scores: mass in box and pointing-game hit rate, in %."""
    means = scores.groupby("stream")[["mass", "hit"]].mean()
    return {f"{s}.{k}": 100 * float(means.loc[s, k]) for s in means.index for k in ("mass", "hit")}


def _cached(path: Path, max_videos: int | None, compute: Callable[[], dict]) -> dict:
    """compute(), kept in `path` beside the run (results/ commits it, the checkpoint it needs is
    not): a fresh clone scores a reused run from the file. Recomputed when max_videos differs."""
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.pop("max_videos") == max_videos:
            return cached
    result = compute()
    write_text(path, json.dumps({**result, "max_videos": max_videos}))
    return result


def run_localization(run_dir: str | Path, max_videos: int | None = None, device: str = "auto") -> dict:
    """SA / LA mass in the actor box and pointing game (%) of a finished run on its test set,
    kept in <run_dir>/localization.json."""
    def compute():
        run = finished_run(run_dir, device)
        return {k: v for k, v in _scores(localization_scores(run.model, run.test, run.boxes_of(), max_videos)).items()
                if k.split(".")[0] in STREAMS}
    return _cached(Path(run_dir) / "localization.json", max_videos, compute)


def attention_bounds(run_dir: str | Path, max_videos: int | None = None, device: str = "auto") -> dict:
    """The floor and the ceiling on a finished run's test set: uniform attention and the oracle
    stream. {"uniform.mass", "uniform.hit", "oracle.mass", "oracle.hit"}, %, kept in
    <run_dir>/attention_bounds.json."""
    def compute():
        run = finished_run(run_dir, device)
        return _scores(localization_scores(oracle_model(run), run.test, run.boxes_of(), max_videos))
    return _cached(Path(run_dir) / "attention_bounds.json", max_videos, compute)


def check_scorable(needs: dict[Path, tuple[str, ...]], max_videos: int | None, remedy: Callable[[Path], str]) -> None:
    """Before any training: each finished run to be reused ({run_dir: the score files it must
    give}) has those files in results/, computed for this max_videos, or the checkpoint to
    compute them from. A fresh clone holds the scores a reproduction committed and no checkpoint."""
    for run_dir, files in needs.items():
        if not (run_dir / "final.json").is_file() or (run_dir / "checkpoints" / "best.pt").is_file():
            continue
        for name in files:
            cache = run_dir / name
            if not (cache.is_file() and json.loads(cache.read_text()).get("max_videos") == max_videos):
                raise RuntimeError(f"{run_dir}: finished, but neither its {name} (max_videos={max_videos}) nor "
                                   f"its checkpoints/best.pt (checkpoints are not committed) is here; retrain it: "
                                   f"{remedy(run_dir)}")


@dataclass
class CausesResult:
    runs: pd.DataFrame           # run_ablation's rows (config = experiment) with sa.mass, sa.hit, la.mass, la.hit
    bounds: dict                 # attention_bounds of the reference's first seed
    pretraining: dict | None     # pretrain_coverage's report, when "object-aware features" ran


def run_causes(seeds, preset: str, results_dir: str, data_root: str | None = None, causes=tuple(CAUSES),
               resume: bool = True, epochs: int | None = None, jobs: int = 1, pretrain_epochs: int | None = None,
               max_videos: int | None = None, device: str = "auto") -> CausesResult:
    """The reference and every cause in `causes` over `seeds` (epochs: the preset's unless given;
    the pretraining takes as many unless pretrain_epochs is given); then localization of every
    finished run on its test set (max_videos: all unless given)."""
    unknown = [c for c in causes if c not in CAUSES]
    if unknown:
        raise ValueError(f"causes: unknown experiment(s) {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(map(repr, CAUSES))}")
    cfg = load_config(preset)
    if cfg.data.name != "synthetic":
        raise ValueError(f"preset {preset!r}: localization needs the actor boxes of a synthetic preset, "
                         f"its data.name is {cfg.data.name!r}")
    folder = Path(results_dir) / "presets"
    runs_dir = Path(results_dir) / "runs"
    pretrained = Path(results_dir) / "pretrained" / f"{cfg.preset}-coverage.pth"
    # as given, like data.root: relative to the working directory (the checkout) when results_dir is,
    # so the derived preset written into results/ names no path of this machine
    context = {"data_root": data_root, "epochs": epochs or cfg.optim.epochs, "pretrained": str(pretrained)}
    # derived presets carry the data root and epochs themselves (run_ablation's would override theirs)
    common = _merge({"data": {"root": data_root}} if data_root else {}, {"optim": {"epochs": epochs}} if epochs else {})
    plans = [(REFERENCE, FULL, preset, data_root, epochs)]      # (experiment, spec, preset, data_root, epochs)
    for name in causes:
        cause = CAUSES[name]
        spec = {**FULL, **cause.spec}
        if cause.preset is None:
            plans.append((name, spec, preset, data_root, epochs))
        else:
            path = derived_preset(preset, cause.tag, _merge(common, cause.preset(cfg, context)), folder)
            plans.append((name, spec, str(path), None, None))
    needs = {runs_dir / ablation_run_name(p, spec, seed): ("localization.json",) for _, spec, p, *_ in plans
             for seed in seeds}
    needs[runs_dir / ablation_run_name(preset, FULL, seeds[0])] += ("attention_bounds.json",)
    check_scorable(needs, max_videos, lambda run_dir: f"remove {run_dir} and run python -m studies.attention_causes "
                   f"--preset {preset}")
    pretraining = None
    if "object-aware features" in causes:
        pretraining = pretrain_coverage(preset, pretrained, data_root, epochs=pretrain_epochs or context["epochs"],
                                        resume=resume, device=device)
    frames = []
    for name, spec, path, root, n in plans:
        if path != preset:
            derived = load_config(path)
            synthetic.ensure(derived.data.root, **derived.data.synthetic)   # once, before parallel runs race for it
        frames.append(run_ablation({name: spec}, seeds, path, root, results_dir=results_dir, resume=resume,
                                   epochs=n, jobs=jobs))
    runs = pd.concat(frames, ignore_index=True)
    scored = [run_localization(runs_dir / row.run, max_videos, device) if row.status == "done" else {}
              for row in runs.itertuples()]
    runs = pd.concat([runs, pd.DataFrame(scored, index=runs.index)], axis=1)
    reference = runs[(runs["config"] == REFERENCE) & (runs["status"] == "done")]
    if reference.empty:
        raise RuntimeError(f"the reference ({REFERENCE}) finished for no seed: see the errors in the runs table")
    bounds = attention_bounds(runs_dir / reference["run"].iloc[0], max_videos, device)
    return CausesResult(runs, bounds, pretraining)


def registry_table(causes=tuple(CAUSES)) -> pd.DataFrame:
    """The experiments: what each changes against the full model and the question it answers."""
    return pd.DataFrame([{"experiment": n, "change": CAUSES[n].change, "question": CAUSES[n].question}
                         for n in causes])


MEASURES = (("mass", "mass in box", "mass"), ("hit", "pointing", "pointing"))   # (key, column, short name)
TEXT_COLUMNS = (["experiment", "seeds", "top-1"]
                + [f"{s} {label}" for s in ("SA", "LA") for _, label, _ in MEASURES]
                + [c for s in ("SA", "LA") for _, _, short in MEASURES for c in (f"Δ {s} {short}", f"{s} {short} call")])


def causes_table(runs: pd.DataFrame, bounds: dict, level: float = 0.95) -> pd.DataFrame:
    """One row per experiment (the reference first): finished seeds, means over seeds with their
    t-intervals (top-1, SA / LA mass in box and pointing game, %), and the paired differences to
    the reference in mass in box and in pointing, each with its call; then uniform attention
    (floor) and the oracle (ceiling). TEXT_COLUMNS are for reading; numeric columns
    (<stream>_mass, _low, _high and d<stream>_mass, _low, _high) are for causes_chart."""
    paired = {(s, key): paired_table(runs, REFERENCE, f"{s}.{key}", level)
              for s in STREAMS for key, _, _ in MEASURES if f"{s}.{key}" in runs}
    top1 = paired_table(runs, REFERENCE, "test.top1", level)
    rows = []
    for name in top1.index:
        row = {"experiment": name, "seeds": top1.loc[name, "seeds"], "top-1": top1.loc[name, "text"]}
        for s in STREAMS:
            for key, label, short in MEASURES:
                p = paired[s, key].loc[name] if (s, key) in paired else None
                row[f"{s.upper()} {label}"] = p["text"] if p is not None else ""
                row |= {f"Δ {s.upper()} {short}": p["Δ"] if p is not None else "",
                        f"{s.upper()} {short} call": p["call"] if p is not None else ""}
                if key == "mass" and p is not None:
                    row |= {f"{s}_mass": p["mean"], f"{s}_low": p["low"], f"{s}_high": p["high"]}
                    if name != REFERENCE and p["Δ"]:
                        row |= {f"d{s}_mass": p["diff"], f"d{s}_low": p["diff_low"], f"d{s}_high": p["diff_high"]}
        rows.append(row)
    for label, key in (("uniform attention (floor)", "uniform"), ("oracle attention (ceiling)", "oracle")):
        row = {"experiment": label, "seeds": "", "top-1": ""}
        for s in STREAMS:
            row |= {f"{s.upper()} mass in box": f"{bounds[f'{key}.mass']:.1f}",
                    f"{s.upper()} pointing": f"{bounds[f'{key}.hit']:.1f}", f"{s}_mass": bounds[f"{key}.mass"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    table[TEXT_COLUMNS] = table[TEXT_COLUMNS].fillna("")
    return table[TEXT_COLUMNS + [c for c in table.columns if c not in TEXT_COLUMNS]]


def causes_chart(table: pd.DataFrame, path=None) -> Figure:
    """Attention mass in the actor box (%) per experiment of causes_table, SA and
    LA with their 95 % t-intervals over seeds (no bar below two seeds), between uniform attention
    (the floor) and the oracle (the ceiling) drawn as vertical lines."""
    fig = Figure(figsize=(7, 0.5 * len(table) + 1.5))
    ax = fig.subplots()
    bounds = table["seeds"] == ""
    rows = table[~bounds].reset_index(drop=True)
    for shift, stream, colour in ((-0.15, "sa", "#1f77b4"), (0.15, "la", "#d62728")):
        ax.errorbar(rows[f"{stream}_mass"], rows.index + shift,
                    xerr=[rows[f"{stream}_mass"] - rows[f"{stream}_low"], rows[f"{stream}_high"] - rows[f"{stream}_mass"]],
                    fmt="o", capsize=3, color=colour, label=stream.upper())
    for (_, row), style in zip(table[bounds].iterrows(), (":", "--")):
        ax.axvline(row["sa_mass"], color="#555555", ls=style, label=f"{row['experiment']}: {row['sa_mass']:.1f}")
    ax.set_yticks(rows.index, rows["experiment"])
    ax.invert_yaxis()
    ax.set(xlabel="attention mass in the actor box (%), mean and 95 % t-interval over seeds", xlim=(0, None))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def pretraining_table(report: dict) -> pd.DataFrame:
    """The pretraining's own result, beside uniform attention, as one row."""
    return pd.DataFrame([{"backbone": report["backbone"], "epochs": report["epochs"],
                          "train videos": report["train_videos"],
                          "BCE first epoch": round(report["loss_first_epoch"], 4),
                          "BCE last epoch": round(report["loss_last_epoch"], 4), "val frames": report["val_frames"],
                          "val mass in box": round(report["val_mass_in_box"], 1),
                          "val pointing": round(report["val_pointing"], 1),
                          "uniform mass in box": round(report["uniform_mass_in_box"], 1),
                          "uniform pointing": round(report["uniform_pointing"], 1)}])
