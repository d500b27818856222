"""``python -m pipeline.transplant``: one transplant, vanilla beside it (the paper's casual attempt).

    python -m pipeline.transplant model=qwen2 prompt="..." source_prompt="..." \
        source_layer=27 target_layer=0 granularity=attn_released

Runs the same engine as the sweep on a single instance and a single (source, target) pair, at any
granularity (``attn`` = the paper's equation, ``attn_released`` = the authors' released attention
transplant, ``ffn``, ``block``), decoding as the sweep does (``decoding=checkpoint|plain``).
"""

from __future__ import annotations

from dataclasses import dataclass

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from pipeline.models.config import ModelSchema, model_spec
from pipeline.transplant.engine import EngineOptions, TransplantEngine
from pipeline.errors import PipelineError, exit_on_user_error
from pipeline.instances import Instance
from pipeline.models import load_model
from pipeline.models.layouts import check_granularity, check_layers
from pipeline.cli import CONF_DIR, config_errors, run_app


@dataclass
class TransplantSchema:
    """The types of ``conf/transplant.yaml``'s keys (ConfigStore ``transplant_schema``); their values live in the YAML."""

    model: ModelSchema = MISSING
    prompt: str = MISSING
    source_prompt: str = MISSING
    source_layer: int = MISSING
    target_layer: int = MISSING
    granularity: str = MISSING
    max_new_tokens: int = MISSING
    decoding: str = MISSING


ConfigStore.instance().store(name="transplant_schema", node=TransplantSchema)


def transplant_once(cfg: DictConfig) -> dict[str, str]:
    """Returns {'vanilla': text, 'transplant': text} for the configured prompts and pair."""
    spec = model_spec(cfg.model)
    granularity = str(cfg.granularity)
    check_granularity(granularity)
    source_layer, target_layer = cfg.source_layer, cfg.target_layer  # ints, by the schema
    instance = Instance("cli", "?", str(cfg.prompt), str(cfg.source_prompt), "")
    n_layers = spec.tiny.n_layers if spec.tiny is not None else None
    for name, layer in (("source_layer", source_layer), ("target_layer", target_layer)):
        if n_layers is not None:  # early, before loading
            check_layers([layer], n_layers, f"{name}={layer}")
    for name in ("prompt", "source_prompt"):
        if not str(cfg[name]).strip():
            raise PipelineError(f"{name} is empty")
    loaded = load_model(spec)
    options = EngineOptions(max_new_tokens=int(cfg.max_new_tokens), decoding=str(cfg.get("decoding", "checkpoint")))
    engine = TransplantEngine(loaded.model, loaded.tokenizer, options)
    gens = list(engine.run([instance], [granularity], [(source_layer, target_layer)]))
    texts = loaded.tokenizer.batch_decode([g.token_ids for g in gens], skip_special_tokens=True)
    return {"vanilla": texts[0], "transplant": texts[1]}


@hydra.main(config_path=str(CONF_DIR), config_name="transplant", version_base=None)
@exit_on_user_error
def _main(cfg: DictConfig) -> None:
    with config_errors():
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        out = transplant_once(cfg)
    print(f"model: {cfg.model.name}  granularity: {cfg.granularity}  "
          f"source layer {cfg.source_layer} -> target layer {cfg.target_layer} (0-based)")
    print(f"vanilla:     {out['vanilla']!r}")
    print(f"transplant:  {out['transplant']!r}")


@exit_on_user_error
def main() -> None:
    run_app(_main, None, config_name="transplant")


if __name__ == "__main__":
    main()
