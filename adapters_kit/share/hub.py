"""The Hugging Face Hub: push a run folder (only the files that belong), and fetch one back for ``load``.

The only module that talks to the Hub. ``HF_ENDPOINT`` selects the server, as everywhere in huggingface_hub.
A token is handed to huggingface_hub's calls and nowhere else: never written to a file, never logged.
Two files go up rewritten: the card (its snippet names the repo) and PEFT's ``adapter_config.json`` (the base named
by its Hub id where one is known, e.g. a built-in's, instead of a path on the training machine; ``task_type``
``FEATURE_EXTRACTION``, which PEFT's loaders and the Hub read).
"""

from __future__ import annotations

import fnmatch
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from adapters_kit.errors import UserError
from adapters_kit.runs.atomic import write_text
from adapters_kit.runs.card import card_text, hub_base_model
from adapters_kit.runs.checkpoint import complete_adapter_config, read_json
from adapters_kit.runs.output import RUN_MARKER

log = logging.getLogger(__name__)

# What a run folder publishes: weights (safetensors only), its JSON descriptions, the preprocessor's files, the
# card and its pictures, the training log. Anything else (checkpoint-*/ folders, optimizer or RNG state, caches,
# hidden temporary files, error CSVs holding training texts, stray credentials) stays local.
ALLOW = ("README.md", "*.safetensors", "adapter_config.json", "labels.json", "train_config.json", "run_info.json",
         "metrics.json", "train_log.jsonl", "*.png", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "*.model",
         "preprocessor_config.json", "processor_config.json", "feature_extractor_config.json", "chat_template.*")
DENY = ("optimizer*", "scheduler*", "rng_state*", "*token", "*.token", "*credentials*", "*.pt", "*.pth", "*.bin",
        "*.pkl", "*.ckpt")


BASE = "base"
"""A distilled student's own base checkpoint (``config.json`` and weights): pushed with the run, which needs it."""


def files_to_push(directory: str | Path) -> list[str]:
    """Sorted names of the files of a run folder that a push uploads (regular files of the top level, and of
    ``base/`` where a student carries its base)."""
    root = Path(directory)
    if not (root / RUN_MARKER).is_file():
        raise UserError(f"{root} is not a run folder (no {RUN_MARKER}); give the --output folder of a training run")
    names = []
    for folder, allow in ((root, ALLOW), (root / BASE, (*ALLOW, "config.json"))):
        for p in sorted(folder.iterdir()) if folder.is_dir() else ():
            n = p.name
            if n.startswith(".") or not p.is_file() or p.is_symlink():
                continue
            if any(fnmatch.fnmatch(n, a) for a in allow) and not any(fnmatch.fnmatch(n, d) for d in DENY):
                names.append(str(p.relative_to(root)))
    return names


@dataclass
class PushResult:
    repo_url: str
    commit_url: str | None
    files: list[str]


def _check_repo_id(repo_id: str) -> None:
    """``user/name`` (a push needs the owner), and a name the Hub accepts: its own rules, checked before anything is
    read or sent, so that a typo fails here and not after an upload started."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or any(c.isspace() for c in repo_id):
        raise UserError(f"--repo-id {repo_id!r} must look like user/name")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        reason = _first_line(e).rstrip(".")
        raise UserError(f"--repo-id {repo_id!r} is not a valid Hub repo id ({reason}); use letters, digits, '-', "
                        f"'_' and '.' in user/name") from None


def push_run(directory: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
             commit_message: str | None = None, token: str | None = None, dry_run: bool = False) -> PushResult:
    """Create (or reuse) the Hub model repo ``repo_id`` and upload the run folder's publishable files.

    The card is regenerated first so that its how-to-load snippet names ``repo_id``. With ``dry_run`` nothing is
    written or sent; the result lists exactly the files that would be uploaded.
    """
    _check_repo_id(repo_id)
    root = Path(directory)
    files = sorted(set(files_to_push(root)) | {"README.md"})
    if dry_run:
        return PushResult(repo_url=repo_id, commit_url=None, files=files)
    # The uploaded card and adapter config are rewritten; the local ones only once the upload went through, so a
    # failed push changes nothing in the run folder.
    rewritten = _rewritten_files(root, repo_id)
    from huggingface_hub import CommitOperationAdd, HfApi

    operations = [CommitOperationAdd(path_in_repo=n, path_or_fileobj=rewritten[n].encode() if n in rewritten else
                                     str(root / n)) for n in files]
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        info = api.create_commit(repo_id=repo_id, operations=operations, revision=revision, repo_type="model",
                                 commit_message=commit_message or f"Upload adapters_kit run {root.name}")
    except Exception as e:
        if _is_network_error(e):
            raise UserError(f"push to {repo_id} failed: {_first_line(e)}; nothing in {root} was changed") from None
        raise
    for name, text in rewritten.items():
        write_text(root / name, text)
    log.info("pushed %d files to %s", len(files), url)
    return PushResult(repo_url=str(url), commit_url=getattr(info, "commit_url", None), files=files)


def _rewritten_files(root: Path, repo_id: str) -> dict[str, str]:
    """The files a push uploads as rewritten text: the card, whose snippet loads ``repo_id``, and PEFT's
    ``adapter_config.json`` (if any) as ``runs.checkpoint.complete_adapter_config``
    completes it, given the backbone's Hub id
    where one is known (the id trained from, or the checkpoint a built-in is a copy of)."""
    texts = {"README.md": card_text(root, load_id=repo_id)}
    if (root / "adapter_config.json").is_file():
        model = read_json(root / RUN_MARKER, dict)["model"]
        with tempfile.TemporaryDirectory() as tmp:  # the run folder's own file changes only after the upload
            shutil.copy(root / "adapter_config.json", tmp)
            complete_adapter_config(Path(tmp), hub_base_model(model) or model)
            texts["adapter_config.json"] = (Path(tmp) / "adapter_config.json").read_text()
    return texts


def _is_network_error(e: Exception) -> bool:
    """HTTP errors from the Hub, offline mode, and the HTTP client's transport errors (refused, timed out...)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    return isinstance(e, (HfHubHTTPError, OfflineModeIsEnabled, OSError)) or \
        type(e).__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def download_run(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """Fetch a pushed run into the Hugging Face cache (or find it there when offline); returns the folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = snapshot_download(repo_id, revision=revision, token=token, repo_type="model",
                                 allow_patterns=[*ALLOW, f"{BASE}/*"])
    except LocalEntryNotFoundError:
        raise UserError(f"{repo_id!r} is neither a run folder nor in the Hugging Face cache, and the Hub is not "
                        f"reachable (HF_HUB_OFFLINE or no network); give a local run folder") from None
    except HfHubHTTPError as e:
        raise UserError(f"cannot download {repo_id!r} from the Hub: {_first_line(e)}") from None
    return Path(path)
