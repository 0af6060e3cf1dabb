"""Hyper-parameter search: N training runs over a search space, scored on the validation split, with optuna.

The space is a string of ``name=values`` parts separated by ``;``: ``lr=1e-4..1e-2 log`` (a log-uniform range),
``weight_decay=0..0.1`` (a uniform range), ``lora_r=4,8,16`` (choices; numbers stay numbers). ``random`` and
``tpe`` samplers draw ``trials`` points; ``grid`` runs every combination of the choices (ranges are not allowed).
Each trial is an ordinary run in ``output/trial-NNN``; at the end only the best one is kept, as ``output/best``,
next to ``sweep.json`` (every trial's parameters and score, ranked).
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

from adapters_kit.builtin.resolve import resolve_model
from adapters_kit.config import LOWER_IS_BETTER, TrainConfig, coerce_field, field_kind
from adapters_kit.data.splits import load_splits
from adapters_kit.errors import UserError
from adapters_kit.methods import get_recipe
from adapters_kit.modalities import get_modality
from adapters_kit.runs.atomic import atomic_dir, write_json
from adapters_kit.runs.output import SWEEP, claim, input_paths
from adapters_kit.tasks import task_class
from adapters_kit.trainer import AdapterTrainer, resolve_config

SAMPLERS = ("tpe", "random", "grid")


def default_space(cfg: TrainConfig) -> str:
    """lr log-uniform over 10x either side of the method's default, weight decay 0..0.1, and for PEFT methods the
    rank among 4, 8, 16."""
    lr = resolve_config(cfg).lr
    space = f"lr={lr / 10:g}..{lr * 10:g} log; weight_decay=0..0.1"
    return space + ("; lora_r=4,8,16" if get_recipe(cfg.method).adapter(cfg).rank else "")


def parse_space(spec: str) -> dict[str, tuple]:
    """``name -> ("range", low, high, log)`` or ``("choice", values)``; names must be config fields, range bounds
    numbers for a numeric field, choices values of the field's type (read as a flag's text would be)."""
    kinds = {f.name: field_kind(f.name) for f in fields(TrainConfig)}
    space: dict[str, tuple] = {}
    for part in [p.strip() for p in spec.split(";") if p.strip()]:
        name, sep, values = part.partition("=")
        name, values = name.strip(), values.strip()
        if not sep or not values:
            raise UserError(f"bad --space part {part!r}: write name=low..high [log] or name=a,b,c")
        if name not in kinds or name in ("model", "data", "output", "method"):
            raise UserError(f"--space names {name!r}, which is not a hyper-parameter of TrainConfig")
        space[name] = _range(name, values, kinds[name]) if ".." in values else _choices(name, values, part)
    if not space:
        raise UserError("--space is empty; give at least one name=values part")
    return space


def _range(name: str, values: str, kind: str) -> tuple:
    bounds, _, scale = values.partition(" ")
    low, _, high = bounds.partition("..")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise UserError(f"bad --space range {values!r} for {name}: write low..high") from None
    if kind not in ("int", "float"):
        raise UserError(f"bad --space range for {name}: it is not a number; give choices a,b,c")
    if not lo < hi or (scale.strip() == "log" and lo <= 0):
        raise UserError(f"bad --space range for {name}: need low < high (and low > 0 for log)")
    return ("range", lo, hi, scale.strip() == "log")


def _choices(name: str, values: str, part: str) -> tuple:
    """Each choice coerced as the config coerces a flag (``lora_r=4,8`` ints, ``flip=true,false`` bools); a value
    the field cannot hold is refused here, naming it."""
    texts = [v.strip() for v in values.split(",") if v.strip()]
    if not texts:
        raise UserError(f"bad --space part {part!r}: write name=a,b,c")
    try:
        return ("choice", [coerce_field(name, v) for v in texts])
    except UserError as e:
        raise UserError(f"bad --space value in {part!r}: {str(e).removeprefix('invalid config: ')}; fix it in "
                        f"--space") from None


def check_space(cfg: TrainConfig, space: dict[str, tuple]) -> None:
    """Every choice and both ends of every range make a config that validates and resolves (names, the model's
    limits), so that a bad value fails before the sweep folder or any trial exists, not at trial 5."""
    for name, s in space.items():
        values = s[1] if s[0] == "choice" else list(s[1:3])
        for value in [_typed({name: v})[name] for v in values]:  # as a trial would pass it (an int rank stays int)
            try:
                resolve_config(cfg.replace(**{name: value}))
            except UserError as e:
                raise UserError(f"bad --space value {name}={value!r}: {str(e).removeprefix('invalid config: ')}; "
                                f"fix it in --space") from None


def run_sweep(cfg: TrainConfig, space_spec: str | None = None, trials: int = 8, sampler: str = "tpe",
              print_fn=print) -> dict[str, Any]:
    """Run the search; returns ``sweep.json``'s content."""
    import optuna

    if sampler not in SAMPLERS:
        raise UserError(f"unknown --sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if trials < 1:
        raise UserError("--trials must be a positive integer")
    space = parse_space(space_spec or default_space(cfg))
    check_space(cfg, space)
    out = Path(cfg.output)
    claim(out, SWEEP, overwrite=cfg.overwrite,
          inputs=input_paths(*cfg.input_specs()))
    if sampler == "grid":
        ranges = [n for n, s in space.items() if s[0] == "range"]
        if ranges:
            raise UserError(f"--sampler grid needs choices, not ranges ({', '.join(ranges)}); write a,b,c")
        grid = {n: s[1] for n, s in space.items()}
        chosen = optuna.samplers.GridSampler(grid, seed=cfg.seed)
        trials = min(trials, _grid_size(grid))
    else:
        cls = optuna.samplers.TPESampler if sampler == "tpe" else optuna.samplers.RandomSampler
        chosen = cls(seed=cfg.seed)
    cfg = cfg.replace(best_metric=cfg.best_metric or _task_default_metric(cfg))
    metric = cfg.best_metric
    direction = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=chosen)
    # Trials run inside a hidden temporary folder that becomes ``output`` only once the sweep is done: an
    # interrupted sweep leaves no half-filled folder, and --overwrite replaces a finished one only then.
    with atomic_dir(out) as tmp:
        result = _search(cfg, study, space, trials, tmp, sampler, print_fn)
        write_json(tmp / "sweep.json", result)
    return result


def _task_default_metric(cfg: TrainConfig) -> str:
    """The selection metric of the task the data holds (``--task``, or detected from its label column), which
    every trial must be ranked by."""
    _, modality = resolve_model(cfg.model)
    splits = load_splits(cfg, get_modality(modality, cfg))
    return task_class(splits.task).best_metric


def _search(cfg: TrainConfig, study, space: dict[str, tuple], trials: int, out: Path, sampler: str,
            print_fn) -> dict[str, Any]:
    """Run the trials into ``out``; keep the best as ``out/best``; returns ``sweep.json``'s content."""
    metric, direction = cfg.best_metric, study.direction.name.lower()
    rows: list[dict[str, Any]] = []

    def objective(trial) -> float:
        params = {}
        for name, s in space.items():
            if s[0] == "range":
                params[name] = trial.suggest_float(name, s[1], s[2], log=s[3])
            else:
                params[name] = trial.suggest_categorical(name, s[1])
        folder = out / f"trial-{trial.number:03d}"
        print_fn(f"trial {trial.number + 1}/{trials}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float)
                                                                     else f"{k}={v}" for k, v in params.items()))
        metrics = AdapterTrainer(cfg.replace(output=str(folder), overwrite=False, **_typed(params))).train()
        score = metrics["validation"][metric]
        rows.append({"trial": trial.number, "params": params, metric: score, "folder": folder.name,
                     "train_seconds": metrics["train"]["train_seconds"]})
        return score

    study.optimize(objective, n_trials=trials)
    rows.sort(key=lambda r: r[metric], reverse=direction == "maximize")
    best = rows[0]
    for r in rows[1:]:
        shutil.rmtree(out / r["folder"], ignore_errors=True)
    (out / best["folder"]).rename(out / "best")
    return {"metric": f"validation {metric}", "direction": direction, "sampler": sampler,
            "space": {n: list(s[1:]) if s[0] == "range" else s[1] for n, s in space.items()},
            "best": {**best, "folder": "best"}, "trials": rows}


def _typed(params: dict[str, Any]) -> dict[str, Any]:
    """Values as the config's field types (a choice of 8 for lora_r stays int, lr stays float)."""
    return {k: (int(v) if field_kind(k) == "int" and isinstance(v, (int, float)) else v) for k, v in params.items()}


def _grid_size(grid: dict[str, list]) -> int:
    size = 1
    for values in grid.values():
        size *= len(values)
    return size
