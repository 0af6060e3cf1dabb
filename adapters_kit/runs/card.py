"""Model cards: data read from a run folder's JSON files, rendered from the Jinja2 template in ``model_cards/``.

The card is written as the run folder's ``README.md`` (what the Hub shows) on every train and by
``adapters-kit card DIR``. Its YAML front matter follows the Hub's model-card metadata (``library_name``,
``base_model``, ``pipeline_tag``, ``tags``, ``datasets``, ``metrics``, ``model-index``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from adapters_kit.config import TrainConfig, from_dict
from adapters_kit.errors import UserError
from adapters_kit.methods import get_recipe
from adapters_kit.runs.atomic import write_text
from adapters_kit.runs.checkpoint import read_json, read_labels
from adapters_kit.tasks import LabelMap, Task, get_task
from adapters_kit.tasks.base import DEFAULT_TASK

TEMPLATE = "model_card.md.j2"
# Built-in backbones ship inside packages; the card names the Hub checkpoint they are a copy of.
KNOWN_HUB_IDS = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}
EXAMPLE_INPUTS = {"text": '["Shares rose sharply after the results were published."]',
                  "image": '["photo.jpg"]', "audio": '["clip.wav"]'}
INPUT_KINDS = {"text": "texts", "image": "images", "audio": "audio clips"}


def template_dir() -> Path:
    """The ``model_cards/`` folder: ``$ADAPTERS_KIT_CARD_TEMPLATES``, else the one beside the package (a source
    checkout or an editable install)."""
    # adapters_kit/model_cards is a symlink to the repository's model_cards/ that wheels carry as real files.
    candidates = [os.environ.get("ADAPTERS_KIT_CARD_TEMPLATES"), Path(__file__).resolve().parents[2] / "model_cards",
                  Path(__file__).parents[1] / "model_cards"]
    for c in candidates:
        if c and (Path(c) / TEMPLATE).is_file():
            return Path(c)
    raise UserError(f"model card template {TEMPLATE} not found (looked in {candidates[1]}); install adapters_kit "
                    f"from its source tree or set ADAPTERS_KIT_CARD_TEMPLATES to a folder holding it")


def hub_base_model(model: str) -> str | None:
    """The Hub id of a backbone, or None when it is a local folder the Hub cannot link to."""
    if model in KNOWN_HUB_IDS:
        return KNOWN_HUB_IDS[model]
    if os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") != 1 or os.path.isdir(model):
        return None
    return model


@dataclass
class CardData:
    """Everything the card says, taken from ``train_config.json``, ``run_info.json``, ``metrics.json`` and
    ``labels.json``. ``load_id`` is what the how-to-load snippet passes to ``load`` (run folder or Hub repo id)."""

    load_id: str
    cfg: dict[str, Any]
    info: dict[str, Any]
    metrics: dict[str, Any]
    labels: list[str]
    confusion_matrix: str | None = None
    extra_tags: list[str] = field(default_factory=list)
    label_params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_run(cls, directory: str | Path, load_id: str | None = None) -> "CardData":
        """Read a run folder's JSON files; ``load_id`` defaults to the folder's path."""
        root = Path(directory)
        cfg = read_json(root / "train_config.json")
        label_map = read_labels(root, cfg.get("task"))
        png = "confusion_matrix.png" if (root / "confusion_matrix.png").exists() else None
        return cls(load_id=load_id or str(root), cfg=cfg, info=read_json(root / "run_info.json"),
                   metrics=read_json(root / "metrics.json"), labels=list(label_map.names), confusion_matrix=png,
                   label_params=label_map.params)

    @property
    def modality(self) -> str:
        return self.info.get("modality", "text")

    @cached_property
    def config(self) -> TrainConfig:
        """The saved settings as a config (today's defaults for any an older version did not record), read as
        loading the run reads them."""
        return from_dict(self.cfg)

    @cached_property
    def task(self) -> Task:
        return get_task(self.config.task or DEFAULT_TASK, LabelMap(tuple(self.labels), self.label_params), self.config)

    @property
    def pipeline_tag(self) -> str:
        return self.task.pipeline_tag(self.modality, pairs=bool(self.info.get("pair_column")))

    @property
    def recipe(self):
        return get_recipe(self.cfg["method"])

    @property
    def is_peft(self) -> bool:
        return self.recipe.adapter(self.config).peft

    def splits(self) -> list[str]:
        headline = self.task.card_columns[0]
        return [s for s, m in self.metrics.items() if isinstance(m, dict) and headline in m]

    def front_matter(self) -> dict[str, Any]:
        """The Hub metadata block."""
        tag = self.pipeline_tag
        meta: dict[str, Any] = {"library_name": "peft" if self.is_peft else "pytorch"}
        base = hub_base_model(self.cfg["model"])
        if base:
            meta["base_model"] = base
        meta["pipeline_tag"] = tag
        meta["tags"] = ["adapters_kit", self.cfg["method"], tag, *(["peft"] if self.is_peft else []),
                        *self.extra_tags]
        meta["datasets"] = [] if "=" in self.cfg["data"] else [self.cfg["data"]]
        meta["metrics"] = list(dict.fromkeys(kind for _, kind, _, _ in self.task.hub_metrics))
        results = [{"task": {"type": tag, "name": tag.replace("-", " ").capitalize()},
                    "dataset": {"name": self.dataset, "type": self.dataset, "split": s},
                    "metrics": [{"type": kind, "value": round(self.metrics[s][key], 4), "name": name,
                                 **({"args": args} if args else {})}
                                for key, kind, name, args in self.task.hub_metrics
                                if self.metrics[s].get(key) is not None]}
                   for s in self.splits()]
        meta["model-index"] = [{"name": self.title, "results": results}]
        return meta

    @property
    def dataset(self) -> str:
        data = self.cfg["data"]
        return data if "=" not in data else "custom files"

    @property
    def title(self) -> str:
        name = self.load_id.rstrip("/").split("/")[-1] or "run"
        return f"{name}: {self.cfg['method']} on {self.cfg['model'].rstrip('/').split('/')[-1]}"

    def context(self) -> dict[str, Any]:
        """The template's variables."""
        cfg, info = self.cfg, self.info
        trainable, total = info.get("trainable_parameters", 0), info.get("total_parameters", 0)
        support_split = next((s for s in ("test", "validation") if s in self.splits()), None)
        per_class = self.metrics.get(support_split, {}).get("per_class", {}) if support_split else {}
        sizes = info.get("data_report", {}).get("sizes", {})
        return {
            "front_matter": yaml.safe_dump(self.front_matter(), sort_keys=False, allow_unicode=True).strip(),
            "title": self.title, "pipeline_tag": self.pipeline_tag,
            "method_description": self.recipe.describe(self.config) + self.student_note(),
            "base_model": hub_base_model(cfg["model"]), "model": cfg["model"], "dataset": self.dataset,
            "adapters_kit_version": info.get("adapters_kit_version", "?"),
            "trainable_parameters": f"{trainable:,}", "total_parameters": f"{total:,}",
            "trainable_share": f"{100 * trainable / total:.2f}%" if total else "n/a",
            "load_snippet": self.load_snippet(), "peft_snippet": self.peft_snippet(), "pooling": cfg.get("pooling"),
            "hyperparameters": self.hyperparameters(), "support_split": support_split or "-",
            "label_rows": [{"id": i, "label": n, "support": per_class.get(n, {}).get("support", "-")}
                           for i, n in enumerate(self.labels)],
            "metric_columns": ("n", *self.task.card_columns),
            "metric_rows": [[s, *(_fmt(self.metrics[s].get(k)) for k in ("n", *self.task.card_columns))]
                            for s in self.splits()],
            "confusion_matrix": self.confusion_matrix,
            "intended_use": self.task.card_use.format(
                inputs=INPUT_KINDS.get(self.modality, "inputs"), n=len(self.labels), target=self.labels[0],
                dataset=self.dataset, sizes=", ".join(f"{s} {n}" for s, n in sizes.items()) or "?"),
            "max_length": cfg.get("max_length") if self.modality == "text" else None,
            "distillation": self.distillation(),
        }

    def student_note(self) -> str:
        """For a layer-pruned student: how many of the base model's blocks it keeps."""
        kept = self.info.get("teacher", {}).get("blocks_kept")
        return f" of a student keeping {len(kept)} of the {self.info['teacher']['teacher_blocks']} blocks" if kept \
            else ""

    def distillation(self) -> dict[str, Any] | None:
        """A student's teacher and the two models side by side (test metrics, parameters, measured speed)."""
        teacher = self.info.get("teacher")
        if not teacher:
            return None
        speed, columns = teacher.get("speed", {}), self.task.card_columns
        student = self.metrics.get("test", {})
        kept = teacher.get("blocks_kept")
        return {"teacher": teacher["run"], "what": f"{teacher['method']} on {teacher['model']}",
                "temperature": teacher["temperature"], "alpha": teacher["alpha"],
                "blocks": f"{', '.join(map(str, kept))} of its {teacher['teacher_blocks']}" if kept else None,
                "unlabelled": teacher.get("teacher_labelled_examples"), "columns": columns,
                "speed_note": f"batch {speed['batch_size']}, {speed['examples']} {speed['split']} inputs, measured "
                              f"side by side after training" if speed else "",
                "rows": [["teacher", f"{teacher['parameters']:,}",
                          _fmt(speed.get("teacher_examples_per_second")), *(_fmt(teacher["test"].get(k))
                                                                             for k in columns)],
                         ["this student", f"{self.info.get('total_parameters', 0):,}",
                          _fmt(speed.get("student_examples_per_second")), *(_fmt(student.get(k)) for k in columns)]]}

    def hyperparameters(self) -> list[tuple[str, Any]]:
        cfg = self.cfg
        keys = ["method", "model", "pooling", "head", "epochs", "lr", "batch_size", "grad_accum_steps", "max_length",
                "weight_decay", "warmup_ratio", "max_grad_norm", "mixed_precision", "best_metric", "seed"]
        keys += [k for k in self.recipe.card_knobs(self.config) if k not in keys]
        if cfg.get("attention_dropout") is not None:  # set by the run (PEFT methods: 0), not the backbone's own
            keys.append("attention_dropout")
        rows = [(k, cfg.get(k)) for k in keys if k in cfg]
        if self.info.get("trained_blocks"):  # which blocks the method adapted, whatever --adapter-layers said
            rows.append(("trained_blocks", f"{', '.join(map(str, self.info['trained_blocks']))} "
                                           f"(of blocks 0-{self.info['blocks'] - 1})"))
        return rows

    def load_snippet(self) -> str:
        example = EXAMPLE_INPUTS.get(self.modality, '["..."]')
        return (f"from adapters_kit import load\n\nclf = load({self.load_id!r})\n"
                f"print(clf({example}))\nprint(clf.logits({example}).shape)")

    def peft_snippet(self) -> str | None:
        cfg = self.cfg
        if not self.is_peft or self.modality != "text" or (cfg["head"], cfg["pooling"]) != ("linear", "mean"):
            return None  # the snippet spells out mean pooling and the linear head
        base = hub_base_model(cfg["model"]) or cfg["model"]
        return ("import torch\nfrom peft import PeftModel\nfrom safetensors.torch import load_file\n"
                "from transformers import AutoModel, AutoTokenizer\n\n"
                f"run = {self.load_id!r}  # a local copy of this repository\n"
                f"backbone = PeftModel.from_pretrained(AutoModel.from_pretrained({base!r}), run).eval()\n"
                "head = load_file(f\"{run}/head.safetensors\")  # Dropout + Linear: keys 1.weight, 1.bias\n"
                "batch = AutoTokenizer.from_pretrained(run)([\"some text\"], return_tensors=\"pt\")\n"
                "hidden = backbone(**batch).last_hidden_state\n"
                "mask = batch[\"attention_mask\"].unsqueeze(-1).float()\n"
                "pooled = (hidden * mask).sum(1) / mask.sum(1)  # mean pooling\n"
                "logits = pooled @ head[\"1.weight\"].T + head[\"1.bias\"]")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render_card(data: CardData) -> str:
    """The card's Markdown text."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), keep_trailing_newline=True,
                             trim_blocks=True, undefined=jinja2.StrictUndefined, autoescape=False)
    return env.get_template(TEMPLATE).render(**data.context())


def card_text(directory: str | Path, load_id: str | None = None) -> str:
    """The card of a run folder, rendered (nothing written)."""
    return render_card(CardData.from_run(Path(directory), load_id))


def write_card(directory: str | Path, load_id: str | None = None) -> Path:
    """Render the card of a run folder into its ``README.md`` (atomic write); returns the path."""
    return write_text(Path(directory) / "README.md", card_text(directory, load_id))
