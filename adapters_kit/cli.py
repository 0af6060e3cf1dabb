"""The ``adapters-kit`` console script: flags become the same ``TrainConfig`` the API uses.

User errors print one line and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from adapters_kit.builtin.catalog import DATASETS, MODELS
from adapters_kit.config import SECTIONS, TrainConfig, field_docs, field_kind, given_values, load_config, section_of
from adapters_kit.errors import TrainingInterrupted, UserError
from adapters_kit.serve.options import add_arguments as add_serve_arguments
from adapters_kit.serve.options import settings_from

NOT_FLAGS = ("extra",)
"""Config fields with no flag (free-form notes: YAML or the Python API only). Every other field of ``TrainConfig``
is a flag of ``train`` and ``sweep``, made from the field itself: its name, type and docstring."""
SWEEP_SKIPS = ("resume", "resume_from")
"""Fields that mean nothing for a whole sweep (each trial is a fresh run)."""
DISTILL_SKIPS = ("teacher",)
"""Fields ``distill`` takes otherwise (the teacher is its positional argument)."""
TYPES = {"int": int, "float": float}


def config_flags(skip: tuple[str, ...] = ()) -> list[str]:
    """The config fields that are flags, in ``TrainConfig``'s order."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_FLAGS + skip]


class _Switch(argparse.Action):
    """A boolean flag as ``BooleanOptionalAction`` makes it (``--augment`` / ``--no-augment``) that also takes
    ``true`` or ``false`` as a value (``--augment false``), as the config does."""

    def __init__(self, option_strings, dest, **kwargs):
        negative = [f"--no-{o[2:]}" for o in option_strings if o.startswith("--")]
        super().__init__([*option_strings, *negative], dest, nargs="?", metavar="true|false", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string.startswith("--no-"):
            if values is not None:
                parser.error(f"argument {option_string}: takes no value")
            values = "false"
        setattr(namespace, self.dest, "true" if values is None else values)


def _summary(doc: str) -> str:
    """A field docstring's first sentence, as plain text for --help (``%`` escaped for argparse)."""
    first = " ".join(doc.split("\n\n")[0].split()).replace("``", "")
    cut = first.find(". ")
    return (first if cut < 0 else first[:cut + 1]).replace("%", "%%")


def _add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    docs = field_docs()
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    groups = {section: parser.add_argument_group(f"{section} settings") for section in SECTIONS}
    for name in config_flags(skip):
        help_ = f"{_summary(docs.get(name, ''))} (default: {defaults[name]})"
        flag, group = "--" + name.replace("_", "-"), groups[section_of(name)]
        if field_kind(name) == "bool":
            group.add_argument(flag, action=_Switch, default=None, help=help_)
        else:
            group.add_argument(flag, type=TYPES.get(field_kind(name), str), default=None, help=help_)


def _overrides(args, names: list[str]) -> list[str]:
    return [f"{k}={v}" for k in names if (v := getattr(args, k)) is not None]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line the way every other user error is reported: one line, exit 2.

    argparse's own ``error`` prints the whole usage block (dozens of lines for ``train``) before the message, which
    buries it. Subparsers are made from the parser's class, so they inherit this."""

    def error(self, message: str):
        raise UserError(f"{message}; see {self.prog} --help")

    def parse_args(self, args=None, namespace=None):
        # An unknown flag after a command is found by the top-level parser; name the command's help, not the top's.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            raise UserError(f"unrecognized arguments: {' '.join(extras)}; see "
                            f"{self.prog}{' ' + command if command else ''} --help")
        return parsed


def _repo_id(value: str) -> str:
    """``--repo-id``, checked by the Hub's own naming rules while the command line is read (dry runs too)."""
    from adapters_kit.share.hub import _check_repo_id

    try:
        _check_repo_id(value)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--repo-id ")) from None  # argparse names the flag
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="adapters-kit", description="Transfer learning with adapters and probes.")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an adapter or probe and write a run folder")
    t.add_argument("--config", help="YAML config; flags override its values")
    _add_config_flags(t)
    w = sub.add_parser("sweep", help="hyper-parameter search over training runs (optuna), best run kept")
    w.add_argument("--config", help="YAML config; flags override its values")
    _add_config_flags(w, skip=SWEEP_SKIPS)
    w.add_argument("--space", help="e.g. 'lr=1e-4..1e-2 log; weight_decay=0..0.1; lora_r=4,8,16' (default: that, "
                                   "around the method's lr)")
    w.add_argument("--trials", type=int, default=8)
    w.add_argument("--sampler", default="tpe", help="tpe, random or grid (every combination of the choices)")
    ds = sub.add_parser("distill", help="train a smaller student run on a teacher run's outputs")
    ds.add_argument("teacher_run", help="the teacher's run folder (any method and modality)")
    ds.add_argument("--config", help="YAML config; flags override its values")
    ds.add_argument("--student", dest="model", help="the student backbone: a built-in name, checkpoint folder or Hub "
                                                    "id (default: the teacher's own, keeping --student-layers of its "
                                                    "blocks)")
    _add_config_flags(ds, skip=DISTILL_SKIPS)
    e = sub.add_parser("eval", help="evaluate a run folder on a data split; updates DIR/metrics.json")
    e.add_argument("run_dir")
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="test")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--text-column", help="default: the column the run was trained on")
    e.add_argument("--text-pair-column", help="sentence-pair runs: default: the column the run was trained on")
    e.add_argument("--label-column", help="default: the column the run was trained on")
    e.add_argument("--errors", type=int, default=0, metavar="N",
                   help="write the N most confident mistakes to DIR/errors_<split>.csv")
    r = sub.add_parser("report", help="redraw a run folder's PNGs and print its metrics")
    r.add_argument("run_dir")
    c = sub.add_parser("compare", help="side-by-side table of several runs")
    c.add_argument("run_dirs", nargs="+")
    c.add_argument("--split", default="test")
    c.add_argument("--measure", type=int, default=0, metavar="N",
                   help="also time inference (examples/s, batch 32) of every run side by side on the first N inputs "
                        "of the first run's split")
    pr = sub.add_parser("predict", help="label texts, or image / audio files, with a run folder")
    pr.add_argument("run_dir")
    pr.add_argument("texts", nargs="*", help="inputs; a sentence-pair run takes each pair as TEXT<TAB>TEXT_PAIR")
    pr.add_argument("--file", help="one input per line (sentence pairs: TEXT<TAB>TEXT_PAIR)")
    pr.add_argument("--top-k", type=int, default=1)
    cd = sub.add_parser("card", help="regenerate a run folder's model card (README.md)")
    cd.add_argument("run_dir")
    cd.add_argument("--repo-id", type=_repo_id, help="Hub repo the how-to-load snippet names (default: the run "
                                                     "folder)")
    pu = sub.add_parser("push", help="upload a run folder's publishable files to a Hub model repo")
    pu.add_argument("run_dir")
    pu.add_argument("--repo-id", required=True, type=_repo_id, help="user/name")
    pu.add_argument("--private", action="store_true")
    pu.add_argument("--revision", help="branch to commit to (created if missing); default main")
    pu.add_argument("--commit-message")
    pu.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded; send nothing")
    pu.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login); never written anywhere")
    ex = sub.add_parser("export", help="merged / ONNX / int8 artefact of a run, verified against it")
    ex.add_argument("run_dir")
    ex.add_argument("--to", required=True, choices=["merged", "onnx", "int8"])
    ex.add_argument("--output", required=True, help="folder to write (must be new or empty)")
    ex.add_argument("--data", help="data spec to measure accuracy and speed on (as for eval)")
    ex.add_argument("--split", default="test")
    ex.add_argument("--max-samples", type=int, help="measure on at most this many examples of the split")
    sv = sub.add_parser("serve", help="serve run folders over HTTP, sharing base models (FastAPI + uvicorn)")
    add_serve_arguments(sv)
    sub.add_parser("models", help="list built-in backbones")
    sub.add_parser("datasets", help="list built-in datasets")
    return p


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(line.rstrip() for line in [fmt.format(*header), fmt.format(*["-" * w for w in widths])] +
                     [fmt.format(*map(str, r)) for r in rows])


def _show(table, width: int = 100) -> None:
    from rich.console import Console

    Console(width=max(width, shutil.get_terminal_size().columns)).print(table)


def cmd_train(args) -> int:
    return _train(load_config(args.config, _overrides(args, config_flags())))


def _train(cfg) -> int:
    from adapters_kit.runs.report import metrics_table
    from adapters_kit.trainer import AdapterTrainer

    metrics = AdapterTrainer(cfg).train()
    _show(metrics_table(metrics, title=f"{cfg.method} on {cfg.model}"))
    train = metrics["train"]
    print(f"trained {train['train_samples']} samples in {train['train_seconds']:.1f} s "
          f"({train['samples_per_second']:.1f} samples/s); run folder: {cfg.output}")
    return 0


def cmd_distill(args) -> int:
    from adapters_kit.distill.job import student_config

    values = given_values(args.config, _overrides(args, config_flags(DISTILL_SKIPS)))
    cfg = student_config(args.teacher_run, **values)
    _train(cfg)
    speed = json.loads((Path(cfg.output) / "run_info.json").read_text())["teacher"]["speed"]
    print(f"student {speed['student_examples_per_second']:.1f} examples/s, teacher "
          f"{speed['teacher_examples_per_second']:.1f} ({speed['speedup']:.2f}x; batch {speed['batch_size']}, "
          f"{speed['examples']} {speed['split']} inputs)")
    return 0


def cmd_sweep(args) -> int:
    from adapters_kit.sweep import run_sweep

    cfg = load_config(args.config, _overrides(args, config_flags(SWEEP_SKIPS)))
    result = run_sweep(cfg, args.space, args.trials, args.sampler)
    metric = result["metric"].split()[-1]
    names = list(result["space"])
    rows = [[str(r["trial"]), *[f"{r['params'][n]:.4g}" if isinstance(r["params"][n], float) else
                               str(r["params"][n]) for n in names], f"{r[metric]:.4f}", f"{r['train_seconds']:.1f}"]
            for r in result["trials"]]
    print(_table(rows, ["trial", *names, f"validation {metric}", "train s"]))
    print(f"best: trial {result['best']['trial']}, kept as {Path(cfg.output) / 'best'}; all trials in "
          f"{Path(cfg.output) / 'sweep.json'}")
    return 0


def cmd_eval(args) -> int:
    from adapters_kit.runs.report import metrics_table
    from adapters_kit.trainer import evaluate_run

    if args.batch_size < 1 or args.errors < 0:
        raise UserError("--batch-size must be a positive integer and --errors >= 0")
    metrics = evaluate_run(args.run_dir, args.data, args.split, args.batch_size, args.text_column,
                           args.label_column, errors=args.errors, text_pair_column=args.text_pair_column)
    _show(metrics_table({args.split: metrics}))
    print(f"written to {Path(args.run_dir) / 'metrics.json'}")
    if "errors_file" in metrics:
        print(f"most confident mistakes: {metrics['errors_file']}")
    return 0


def cmd_report(args) -> int:
    from adapters_kit.runs.report import metrics_table, read_json, write_report

    files = write_report(args.run_dir)
    _show(metrics_table(read_json(Path(args.run_dir) / "metrics.json"), title=str(args.run_dir)))
    for f in files:
        print(f"wrote {f}")
    return 0


def cmd_compare(args) -> int:
    from adapters_kit.runs.report import compare_table

    if args.measure < 0:
        raise UserError("--measure must be a number of inputs >= 0")
    speeds = None
    if args.measure:
        from adapters_kit.distill.speed import measure_runs

        speeds = measure_runs(args.run_dirs, args.split, args.measure)
    _show(compare_table(args.run_dirs, args.split, speeds))
    return 0


def cmd_predict(args) -> int:
    texts = list(args.texts)
    if args.file:
        try:
            texts += [line.rstrip("\n") for line in Path(args.file).read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read --file {args.file}: {getattr(e, 'strerror', None) or e}") from None
    if not texts:
        raise UserError("nothing to predict: give texts (or image / audio file paths) as arguments or --file with "
                        "one per line")
    from adapters_kit.runs.inference import load

    clf = load(args.run_dir)
    inputs = texts
    if clf.run.pairs:
        bad = next((t for t in texts if "\t" not in t), None)
        if bad is not None:
            raise UserError(f"this run reads sentence pairs: give each as TEXT<TAB>TEXT_PAIR (no tab in "
                            f"{bad[:40]!r})")
        inputs = [tuple(t.split("\t", 1)) for t in texts]
    for text, result in zip(texts, clf(inputs, top_k=args.top_k)):
        print(_prediction_line(text, result, args.top_k, clf.task.word_inputs))
    return 0


def _prediction_line(text: str, result: Any, top_k: int, tags: bool = False) -> str:
    """One input's prediction as a JSON line: ``label`` and ``score`` (classification; ``--top-k`` adds the
    runners-up after it), ``score`` (regression), ``labels`` (multi-label: the labels predicted), or ``entities``
    (token classification: the entities, or each word's tag)."""
    shown = {"text": text[:80].replace("\t", " | ")}
    if tags:
        return json.dumps({**shown, "entities": result})
    if isinstance(result, dict):
        return json.dumps({**shown, **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}})
    if top_k == 1:
        return json.dumps({**shown, "labels": [{"label": r["label"], "score": round(r["score"], 4)} for r in result]})
    best, others = result[0], " ".join(f"{r['label']}:{r['score']:.3f}" for r in result[1:])
    return json.dumps({**shown, "label": best["label"], "score": round(best["score"], 4)}) + "  " + others


def cmd_card(args) -> int:
    from adapters_kit.runs.card import write_card

    print(f"wrote {write_card(args.run_dir, load_id=args.repo_id)}")
    return 0


def cmd_push(args) -> int:
    from adapters_kit.share.hub import push_run

    result = push_run(args.run_dir, args.repo_id, private=args.private, revision=args.revision,
                      commit_message=args.commit_message, token=args.token, dry_run=args.dry_run)
    if args.dry_run:
        print(f"dry run: would upload {len(result.files)} file(s) to {args.repo_id}:")
    else:
        print(f"uploaded {len(result.files)} file(s) to {result.repo_url} ({result.commit_url}):")
    for name in result.files:
        print(f"  {name}")
    return 0


def cmd_export(args) -> int:
    from adapters_kit.share.export import export_run

    if args.max_samples is not None and args.max_samples < 1:
        raise UserError("--max-samples must be a positive integer")
    report = export_run(args.run_dir, args.to, args.output, data=args.data, split=args.split,
                        max_samples=args.max_samples)
    rows = [[r["artefact"], f"{r['size_mb']:.2f} MB", "-" if r["examples_per_second"] is None else
             f"{r['examples_per_second']:.1f}", "-" if r["score"] is None else f"{r['score']:.4f}"]
            for r in report["rows"]]
    print(_table(rows, ["artefact", "size on disk", "examples/s", report["rows"][0]["metric"]]))
    for line in report["checks"]:
        print(line)
    print(f"written to {args.output}")
    return 0


def cmd_serve(args) -> int:
    from adapters_kit.serve.server import serve

    return serve(settings_from(args))


def cmd_list(items: dict) -> int:
    tasks = all(hasattr(a, "task") for a in items.values())  # data sets name their task; backbones have none
    rows = [[a.name, a.modality, *([a.task] if tasks else []), "yes" if a.installed() else "no", a.description,
             a.install] for a in items.values()]
    print(_table(rows, ["name", "kind", *(["task"] if tasks else []), "installed", "description", "install with"]))
    return 0


def _quiet_libraries() -> None:
    """Keep the terminal for our own progress bar and messages: no per-file bars from datasets/transformers."""
    import datasets
    import transformers

    # peft reads a property transformers deprecated; the warning is about their code, not the user's run.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except UserError as e:  # a bad command line (see _Parser): --debug may not even have been read yet
        print(f"adapters-kit: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.command in ("train", "distill", "sweep", "eval", "predict", "export", "serve"):
        _quiet_libraries()
    commands = {"train": cmd_train, "distill": cmd_distill, "sweep": cmd_sweep, "eval": cmd_eval,
                "predict": cmd_predict, "report": cmd_report,
                "compare": cmd_compare, "card": cmd_card, "push": cmd_push, "export": cmd_export, "serve": cmd_serve,
                "models": lambda a: cmd_list(MODELS), "datasets": lambda a: cmd_list(DATASETS)}
    try:
        return commands[args.command](args)
    except UserError as e:
        if args.debug:
            raise
        print(f"adapters-kit: error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"adapters-kit: {e}; run the same command with --resume to continue", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("adapters-kit: interrupted; nothing was written", file=sys.stderr)
        return 130
