"""Deployable artefacts of a run, each verified against the run it came from.

- ``merged``: adapter weights merged into the backbone (PEFT ``merge_and_unload``), saved as a transformers
  checkpoint of its own ``model_type`` whose ``auto_map`` names two small files (``remote_code/``: the configuration,
  and the model carrying the pooling and head), so ``AutoModelFor...Classification`` / ``pipeline`` load it with
  ``trust_remote_code=True`` and no peft, and refuse it without (never a stock class with a random head).
- ``onnx``: the merged model through the TorchScript-based ``torch.onnx.export`` (dynamic batch and sequence axes),
  checked with onnxruntime against PyTorch on two batch shapes.
- ``int8``: dynamic int8 quantisation of every ``nn.Linear`` for CPU; int8 weights + scales in safetensors.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from adapters_kit.errors import UserError
from adapters_kit.modalities import encoded_rows
from adapters_kit.model.modeling import AdapterClassifier, feature_dim
from adapters_kit.runs.atomic import atomic_dir, write_json
from adapters_kit.runs.checkpoint import LoadedRun, load_run
from adapters_kit.runs.output import EXPORT, claim, input_paths
from adapters_kit.share.measure import measure, split_batches
from adapters_kit.share.token_export import load_token_merged, save_token_merged

REMOTE_CODE = Path(__file__).with_name("remote_code")
MODEL_CODE, CONFIG_CODE = REMOTE_CODE / "modeling_adapters_kit.py", REMOTE_CODE / "configuration_adapters_kit.py"
AUTO_CLASSES = {"text": "AutoModelForSequenceClassification", "image": "AutoModelForImageClassification",
                "audio": "AutoModelForAudioClassification"}
SAMPLE_TEXTS = ["Shares rose sharply.", "The team won the match after a late goal in the second half of extra time.",
                "New phone chips arrive", "Parliament debated the budget for hours and the vote was delayed again "
                "until next week, when ministers expect a narrow majority.", "Film awards tonight"]
ONNX_TOLERANCE = 1e-3
INT8_WEIGHTS = "model_int8.safetensors"


def merged_classifier(run: LoadedRun) -> AdapterClassifier:
    """A copy of the run's classifier whose backbone is a plain transformers model (adapter merged in) and whose
    head outputs what the task exports (:meth:`adapters_kit.tasks.Task.exported`: a regression's head gives the
    value on the target's own scale, its standardisation folded into the last linear layer).

    PEFT models expose ``merge_and_unload``; calling it needs no peft import here (only adapters/checkpoint import
    peft). Other methods already hold a plain backbone.
    """
    model = copy.deepcopy(run.model).eval()
    backbone = model.backbone
    if hasattr(backbone, "merge_and_unload"):
        backbone = backbone.merge_and_unload()
    last = model.head[-1]
    with torch.no_grad():  # exported(x) is affine: exported(W f + b) = W' f + b'
        task = run.task()
        bias = task.exported(last.bias[None])[0]
        last.weight.copy_((task.exported(last.weight.T) - task.exported(torch.zeros_like(last.weight.T))).T)
        last.bias.copy_(bias)
    return AdapterClassifier(backbone, model.pooling, model.head).eval()


def run_outputs(run: LoadedRun) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """The run's own model, as an exported artefact of it must answer (the reference of every check)."""
    task = run.task()
    return lambda batch: task.exported(run.model(**batch))


def save_config(run: LoadedRun, model: AdapterClassifier, out: Path, with_model: bool = True) -> None:
    """``config.json`` (an ``AdaptersKitConfig``: backbone config, labels, problem type, pooling, head) and the code
    its ``auto_map`` names: the config class, and (``with_model``) the model under the modality's auto class. Its own
    ``model_type`` keeps transformers from loading a stock class with a random head without ``trust_remote_code``."""
    from adapters_kit.share.remote_code.configuration_adapters_kit import AdaptersKitConfig

    auto_map = {"AutoConfig": f"{CONFIG_CODE.stem}.AdaptersKitConfig"}
    if with_model:
        auto_class = AUTO_CLASSES.get(run.info.get("modality", "text"), AUTO_CLASSES["text"])
        auto_map[auto_class] = f"{MODEL_CODE.stem}.AdaptersKitClassifier"
    names = run.labels.names
    # the backbone's settings as its own config.json holds them (to_dict would add the path it was loaded from)
    AdaptersKitConfig(
        backbone_config=model.backbone.config.to_diff_dict(), adapters_kit_pooling=model.pooling,
        adapters_kit_head=run.cfg.head, adapters_kit_feature_dim=feature_dim(model.backbone),
        architectures=["AdaptersKitClassifier"], auto_map=auto_map, id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, problem_type=run.task().problem_type).save_pretrained(str(out))
    for code in (CONFIG_CODE, MODEL_CODE) if with_model else (CONFIG_CODE,):
        shutil.copy(code, out / code.name)


def model_auto_class(config: Any) -> str:
    """The ``AutoModelFor...`` entry of an exported config's ``auto_map`` (the other entry is ``AutoConfig``)."""
    return next(k for k in config.auto_map if k != "AutoConfig")


def _write_side_files(run: LoadedRun, out: Path) -> None:
    run.processor.save_pretrained(str(out))
    write_json(out / "labels.json", {"id2label": {str(i): n for i, n in enumerate(run.labels.names)},
                                     "label2id": run.labels.label2id, "params": run.labels.params})


def save_merged(run: LoadedRun, model: AdapterClassifier, out: Path) -> None:
    """config.json (own model_type + auto_map) + model.safetensors + code files + preprocessor + labels.json."""
    state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    state.update({f"head.{k}": v for k, v in model.head.state_dict().items()})
    save_config(run, model, out)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    _write_side_files(run, out)


def load_merged(directory: str | Path):
    """The merged checkpoint through transformers' own auto class (what a user without adapters_kit does)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(directory), trust_remote_code=True)
    auto = getattr(transformers, model_auto_class(config))
    return auto.from_pretrained(str(directory), trust_remote_code=True).eval()


class _LogitsOnly(nn.Module):
    """Positional inputs -> logits, the signature the ONNX graph gets."""

    def __init__(self, model: AdapterClassifier, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, args)))


def _sample_inputs(modality: str, rate: int, sizes: tuple[int, ...]) -> list[list]:
    """Batches of sample inputs of the sizes given: texts; synthetic images of mixed sizes and modes; waveforms of
    mixed lengths (tones in noise) at the extractor's ``rate``."""
    rng = np.random.default_rng(0)
    if modality == "image":
        def image(i: int) -> Image.Image:
            arr = rng.integers(0, 256, (24 + 9 * i, 40 - 3 * i, 3), dtype=np.uint8)
            return Image.fromarray(arr).convert("L" if i % 3 == 2 else "RGB")
        make = image
    elif modality == "audio":
        def make(i: int) -> np.ndarray:
            t = np.arange(int(rate * (0.4 + 0.3 * i))) / rate
            return (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + rng.normal(0, 0.02, t.shape)).astype(np.float32)
    else:
        def make(i: int) -> str:
            return SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)]
    return [[make(i) for i in range(n)] for n in sizes]


def _sample_batches(run: LoadedRun) -> list[dict[str, torch.Tensor]]:
    """Two batches of different size (and, where inputs vary in length, different length): 2 then 5 inputs."""
    modality = run.info.get("modality", "text")
    if modality == "text":
        # a sentence-pair run is checked on pairs (each sample text with the next one as its second text)
        return [dict(run.processor(texts, texts[1:] + texts[:1] if run.pairs else None, padding=True,
                                   truncation=True, max_length=run.cfg.max_length, return_tensors="pt"))
                for texts in (SAMPLE_TEXTS[:1] + SAMPLE_TEXTS[2:3], SAMPLE_TEXTS)]
    collate = run.modality.collator(run.processor)
    batches = []
    for inputs in _sample_inputs(modality, getattr(run.processor, "sampling_rate", 16000), (2, 5)):
        enc = run.modality.encode(run.processor, inputs)
        batches.append(collate(encoded_rows(enc)))
    return batches


def save_onnx(run: LoadedRun, model: AdapterClassifier, out: Path) -> float:
    """Export ``model.onnx``; returns the max abs logit difference to PyTorch over two batch shapes."""
    import onnxruntime

    batches = _sample_batches(run)
    names = list(batches[0])
    # Token ids, masks and raw waveforms vary in length; pixels and Whisper's mel frames have a fixed size.
    axes = {n: {0: "batch", 1: "sequence"} if batches[0][n].dim() == 2 else {0: "batch"} for n in names}
    axes["logits"] = {0: "batch"}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export (which needs onnxscript); it handles
        # these encoders with dynamic axes and needs nothing else installed.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Tracing notes shape checks it freezes (e.g. transformers' mask padding test, never true for an encoder)
        # and index lowering; the onnxruntime comparison below, on two other shapes, is what vouches for the graph.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(_LogitsOnly(model, names).eval(), tuple(batches[1][n] for n in names),
                          str(out / "model.onnx"), input_names=names, output_names=["logits"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    diff = 0.0
    with torch.inference_mode():
        for batch in batches:
            ref = model(**batch).numpy()
            got = session.run(["logits"], {n: batch[n].numpy() for n in names})[0]
            diff = max(diff, float(abs(ref - got).max()))
    if diff >= ONNX_TOLERANCE:
        raise RuntimeError(f"ONNX logits differ from PyTorch by {diff:.2e} (limit {ONNX_TOLERANCE}); not exported")
    write_json(out / "onnx_check.json", {"max_abs_diff": diff, "tolerance": ONNX_TOLERANCE,
                                         "batch_shapes": [list(b[names[0]].shape) for b in batches],
                                         "inputs": names})
    _write_side_files(run, out)
    save_config(run, model, out, with_model=False)  # labels and settings, for reference (no torch model here)
    return diff


def quantize(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights int8 per tensor, activations at run time)."""
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not installed here; it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)


def _quantized_linears(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)}


def save_int8(run: LoadedRun, model: AdapterClassifier, out: Path) -> nn.Module:
    """Quantise the merged model and save int8 weights with their scales (safetensors, no pickle); returns it."""
    qmodel = quantize(model)
    state = {}
    linears = _quantized_linears(qmodel)
    for name, module in linears.items():
        weight, bias = module._packed_params._weight_bias()
        state[f"{name}.weight_int8"] = weight.int_repr().contiguous()
        state[f"{name}.weight_scale"] = torch.tensor(weight.q_scale(), dtype=torch.float64)
        state[f"{name}.weight_zero_point"] = torch.tensor(weight.q_zero_point(), dtype=torch.int64)
        if bias is not None:
            state[f"{name}.bias"] = bias.detach().contiguous()
    for key, value in model.state_dict().items():
        if not any(key.startswith(name + ".") for name in linears):
            state[key] = value.detach().contiguous()
    save_file(state, str(out / INT8_WEIGHTS), metadata={"format": "adapters_kit-int8-dynamic"})
    save_config(run, model, out)
    _write_side_files(run, out)
    return qmodel


def load_int8(directory: str | Path) -> nn.Module:
    """Rebuild an int8 export: the model structure from config.json (via its modeling file), quantised, then the
    stored int8 weights and scales put back. Needs adapters_kit (the format is its own)."""
    import transformers

    directory = Path(directory)
    config = transformers.AutoConfig.from_pretrained(str(directory), trust_remote_code=True)
    cls = transformers.dynamic_module_utils.get_class_from_dynamic_module(
        config.auto_map[model_auto_class(config)], str(directory))
    state = load_file(str(directory / INT8_WEIGHTS))
    int8 = {k: state.pop(k) for k in [k for k in state if k.endswith((".weight_int8", ".weight_scale",
                                                                      ".weight_zero_point"))]}
    names = sorted({k.rsplit(".", 1)[0] for k in int8})
    biases = {n: state.pop(f"{n}.bias", None) for n in names}
    skeleton = cls(config).eval()
    plain = AdapterClassifier(skeleton.backbone, config.adapters_kit_pooling, skeleton.head)
    # Everything but the quantised linears goes into the float model first; quantising then rebuilds the linears,
    # whose int8 weights and scales are put back as stored.
    missing, unexpected = plain.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k.rsplit(".", 1)[0] not in biases]:
        raise UserError(f"{directory / INT8_WEIGHTS} does not fit its config.json; re-export the run")
    qmodel = quantize(plain)
    linears = _quantized_linears(qmodel)
    if sorted(linears) != names:
        raise UserError(f"{directory / INT8_WEIGHTS} does not fit its config.json; re-export the run")
    for name, module in linears.items():
        weight = torch._make_per_tensor_quantized_tensor(int8[f"{name}.weight_int8"],
                                                         float(int8[f"{name}.weight_scale"]),
                                                         int(int8[f"{name}.weight_zero_point"]))
        module.set_weight_bias(weight, biases[name])
    return qmodel.eval()


def folder_mb(path: Path) -> float:
    """Size of every file under ``path``, in MiB."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def run_size_mb(run_dir: Path, base_path: str) -> float:
    """What serving the run needs on disk: the base checkpoint's weights plus the run folder's weights."""
    base = Path(base_path)
    weights = [*base.glob("*.safetensors"), *Path(run_dir).glob("*.safetensors")]
    return sum(p.stat().st_size for p in weights) / 2**20


def export_run(run_dir: str | Path, to: str, output: str | Path, data: str | None = None, split: str = "test",
               max_samples: int | None = None) -> dict[str, Any]:
    """Write the ``to`` artefact of a run into ``output``; returns ``{"rows": [...], "checks": [...]}``."""
    out = Path(output)
    claim(out, EXPORT, inputs=input_paths(str(run_dir), data))
    run = load_run(run_dir)
    if run.task().word_inputs and (to != "merged" or data):
        raise UserError(f"{run_dir} is a {run.task().name} run: it exports as --to merged (a stock transformers "
                        f"checkpoint), checked on the sample texts, without --data; its ONNX and int8 exports are "
                        f"not built yet")
    # read before anything is written: data or a split that cannot be read is refused with no folder left behind
    batches = measure_batches(run, data, split, max_samples)
    model = merged_classifier(run)
    checks: list[str] = []
    with atomic_dir(out) as tmp:
        if to == "merged":
            save = save_token_merged if run.task().word_inputs else save_merged
            save(run, model, tmp)
            reloaded = load_token_merged(tmp) if run.task().word_inputs else load_merged(tmp)
            diff = _max_diff(run, run_outputs(run), lambda b: reloaded(**b).logits)
            if diff > 1e-4:
                raise RuntimeError(f"merged model differs from the adapter model by {diff:.2e}; not exported")
            checks.append(f"merged vs adapter model: max abs logit difference {diff:.2e} (limit 1e-4)")
            artefact: Callable = lambda b: reloaded(**b).logits  # noqa: E731
        elif to == "onnx":
            diff = save_onnx(run, model, tmp)
            checks.append(f"onnxruntime vs PyTorch on 2 batch shapes: max abs logit difference {diff:.2e} "
                          f"(limit {ONNX_TOLERANCE})")
            artefact = onnx_predictor(tmp / "model.onnx")
        elif to == "int8":
            qmodel = save_int8(run, model, tmp)
            diff = _max_diff(run, run_outputs(run), lambda b: qmodel(**b))
            checks.append(f"int8 vs float: max abs logit difference {diff:.2e} on the sample texts")
            artefact = lambda b: qmodel(**b)  # noqa: E731
        else:
            raise UserError(f"--to must be merged, onnx or int8, got {to!r}")
    artefact_mb = folder_mb(out)
    rows = [{"artefact": "run (adapter)", "size_mb": run_size_mb(Path(run_dir), _base_path(run)),
             "predict": run_outputs(run)},
            {"artefact": to, "size_mb": artefact_mb, "predict": artefact}]
    checks += measure(rows, batches, f"{split} of {data}" if data else "the sample texts", run.task())
    return {"rows": [{k: v for k, v in r.items() if k != "predict"} for r in rows], "checks": checks}


def _base_path(run: LoadedRun) -> str:
    config = getattr(run.model.backbone, "config", None)
    return getattr(config, "_name_or_path", "") or run.info.get("backbone_path", "")


def _max_diff(run: LoadedRun, a: Callable, b: Callable) -> float:
    diff = 0.0
    with torch.inference_mode():
        for batch in _sample_batches(run):
            diff = max(diff, float((a(batch) - b(batch)).abs().max()))
    return diff


def onnx_predictor(path: Path) -> Callable:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def predict(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(session.run(["logits"], {n: batch[n].numpy() for n in names})[0])

    return predict


def measure_batches(run: LoadedRun, data: str | None, split: str,
                    max_samples: int | None) -> list[dict[str, torch.Tensor]]:
    """What :func:`measure` times: ``data``'s ``split`` (with labels), or the built-in sample texts (speed only)."""
    if data:
        return split_batches(run, data, split, max_samples)
    return [b for b in _sample_batches(run) for _ in range(8)]
