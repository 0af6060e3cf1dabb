"""Where a ``--model`` value's files are: a built-in's packaged copy, a checkpoint folder, or a Hub id (its cached
snapshot, or the id once the Hub showed it can serve it); and how many tokens a text backbone takes."""

from __future__ import annotations

import os

from adapters_kit.builtin.catalog import MODELS
from adapters_kit.config import DEFAULT_MAX_LENGTH
from adapters_kit.errors import UserError


def resolve_model(name: str) -> tuple[str, str]:
    """(path or Hub id to pass to ``from_pretrained``, modality name) for a ``--model`` value; the modality of
    a folder or Hub id comes from its config's model type."""
    from adapters_kit.modalities import model_modality

    if name in MODELS:
        return MODELS[name].path(), MODELS[name].modality
    if os.path.isdir(name):
        if not os.path.exists(os.path.join(name, "config.json")):
            raise UserError(f"model folder {name} has no config.json; give a transformers checkpoint folder")
        return os.path.abspath(name), model_modality(name)
    if os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"unknown model {name!r}: not a built-in ({', '.join(MODELS)}) nor a checkpoint folder")
    path = _hub_model(name)
    return path, model_modality(path)


# Files that hold a checkpoint's weights: a cached snapshot with config.json but none of these is incomplete.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
HUB_PROBE_SECONDS = 4.0
"""Seconds the one request that asks the Hub about an uncached model may wait to connect, and then for the answer."""


def _hub_model(name: str) -> str:
    """A Hub id's snapshot folder when the Hugging Face cache holds it (used as is: no network call), else the id,
    once one quick request showed the Hub can serve it. Without that request, an unreachable Hub costs the user
    about two minutes of huggingface_hub's retries (and their warnings) before any error.

    The Hub is reached through ``transformers.utils.hub``, the helpers ``from_pretrained`` itself uses (cache,
    offline mode, endpoint, token, HTTP client), so this check and the download that follows agree."""
    from transformers.utils import hub

    try:
        config = hub.try_to_load_from_cache(name, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: not a well-formed repo id
        raise UserError(f"unknown model {name!r}: not a built-in ({', '.join(MODELS)}), a checkpoint folder, nor a "
                        f"valid Hub id (user/name)") from None
    if isinstance(config, str):
        folder = os.path.dirname(config)
        if any(os.path.isfile(os.path.join(folder, w)) for w in WEIGHT_FILES):
            return folder
    missing = (f"cannot load model {name!r}: it is not a built-in ({', '.join(MODELS)}), a local folder, nor "
               f"{'completely ' if isinstance(config, str) else ''}in the Hugging Face cache")
    if hub.is_offline_mode():
        raise UserError(f"{missing}, and offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE), so the Hub was "
                        f"not asked; fetch it once where the Hub is reachable (it is then cached) or pass a local "
                        f"checkpoint folder")
    if name not in _SERVED:
        problem = _hub_problem(hub, name)
        if problem:
            raise UserError(f"{missing}, and {problem}")
        _SERVED.add(name)
    return name


_SERVED: set[str] = set()
"""Hub ids the Hub confirmed in this process: resolving again (the trainer does, and each sweep value) asks once.
Refusals are not remembered, so a notebook can retry once the network is back."""


def _hub_problem(hub, name: str) -> str | None:
    """Ask the Hub once, with a short timeout, for the repo's config.json (the first file ``from_pretrained``
    fetches); None when it is there, else what stands in the way and what to do."""
    endpoint = hub.constants.ENDPOINT
    try:
        answer = hub.get_session().head(hub.hf_hub_url(name, "config.json"), follow_redirects=False,
                                        headers=hub.build_hf_headers(user_agent=hub.http_user_agent()),
                                        timeout=HUB_PROBE_SECONDS)
    except (OSError, hub.httpx.HTTPError) as e:  # refused, reset, timed out, TLS, DNS: no answer
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        return (f"the Hub ({endpoint}) is unreachable ({reason}); fetch it once where the Hub is reachable (it is "
                f"then cached) or pass a local checkpoint folder")
    code, error = answer.status_code, answer.headers.get("X-Error-Code", "")
    if code < 400:
        return None
    if error == "EntryNotFound":
        return "its Hub repo has no config.json: it is not a transformers checkpoint; pick another model"
    if error == "GatedRepo":
        return (f"its Hub repo is gated (HTTP {code}); accept its terms on {endpoint}/{name} and log in (hf auth "
                f"login or HF_TOKEN)")
    if code in (401, 403, 404):
        return (f"the Hub ({endpoint}) has no model repo {name!r} that this login can read (HTTP {code}); check the "
                f"name (a private repo needs hf auth login or HF_TOKEN)")
    return f"the Hub ({endpoint}) answered HTTP {code}; try again later or pass a local checkpoint folder"


# Model types whose position ids start after the padding index (fairseq's RoBERTa convention): the first
# pad_token_id + 1 rows of the position table are never used by text, so they hold that many fewer tokens.
PADDING_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer",
                                  "data2vec-text", "ibert", "mpnet", "roberta-prelayernorm", "luke", "markuplm",
                                  "xmod", "lilt", "layoutlmv3"})


def position_limit(config) -> tuple[int, str] | None:
    """(most tokens the backbone's position table takes, how that number came about), or None where positions set
    no limit (no ``max_position_embeddings``, or DeBERTa-v2/v3 style relative positions only).

    The model config is the authority, not the tokenizer's ``model_max_length``: that is a preprocessing default
    (often a 1e30 placeholder) that says nothing about the embedding table, which is what fails beyond its size."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or isinstance(positions, bool) or positions < 1 or \
            getattr(config, "position_biased_input", True) is False:
        return None
    pad = getattr(config, "pad_token_id", None)
    if getattr(config, "model_type", "") in PADDING_OFFSET_TYPES and isinstance(pad, int) and 0 <= pad < positions:
        return positions - pad - 1, (f"max_position_embeddings {positions} less {pad + 1} for the padding offset "
                                     f"of {config.model_type}")
    return positions, f"max_position_embeddings {positions}"


def fit_max_length(name: str, max_length: int | None) -> int:
    """The tokens per text a run uses with model ``name``: ``max_length`` if the model takes that many (else a
    one-line refusal naming both numbers), or, not given, 128 or the model's limit when lower. Inputs that are not
    text keep the value (it is unused)."""
    from transformers import AutoConfig

    path, modality = resolve_model(name)
    default = DEFAULT_MAX_LENGTH if max_length is None else max_length
    if modality != "text":
        return default
    try:
        limit = position_limit(AutoConfig.from_pretrained(path))
    except (OSError, ValueError):
        return default  # loading the backbone reports it precisely
    if limit is None:
        return default
    if max_length is None:
        return min(default, limit[0])
    if max_length > limit[0]:
        raise UserError(f"--max-length {max_length} is more than model {name!r} takes: {limit[0]} tokens "
                        f"({limit[1]}); use --max-length {limit[0]} or less")
    return max_length
