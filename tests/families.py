"""Tiny random checkpoints of every model family in pipeline/models/layouts.py (tests only).

Each is built from ``AutoConfig.for_model(model_type, ...)`` with 3 layers, hidden size 64 and the
byte tokenizer of ``pipeline.models.tiny``; ``OVERRIDES`` shrinks what a family's defaults make large
(expert counts, LoRA ranks of MLA) and sets what its layout needs to be exercised: MLA's value
head narrower than its key head, hybrid layer types, sliding windows shorter than the prompts.
A large ``initializer_range`` makes transplants change outputs often (the tests assert a floor).
"""

from __future__ import annotations

import copy

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from pipeline.models.tiny import BOS_ID, EOS_ID, PAD_ID, build_tokenizer
from pipeline.models.layouts import loadable_implementation

VOCAB = 320
COMMON = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.3,
    bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, tie_word_embeddings=False,
)  # fmt: skip
MOE = dict(num_experts=4, num_local_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
           shared_expert_intermediate_size=64)  # fmt: skip
MLA = dict(num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16,
           n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, n_group=1, topk_group=1,
           moe_intermediate_size=32, first_k_dense_replace=1)  # fmt: skip
OVERRIDES: dict[str, dict] = {
    "ministral": dict(head_dim=16),
    "hunyuan_v1_dense": dict(head_dim=16),
    "helium": dict(head_dim=16),
    "qwen2_moe": MOE,
    "qwen3_moe": MOE,
    "mixtral": MOE,
    "granitemoe": MOE,
    "gpt_oss": dict(MOE, sliding_window=6, layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    "gemma2": dict(sliding_window=6, query_pre_attn_scalar=32, attn_logit_softcapping=2.0, final_logit_softcapping=None),
    "gemma3_text": dict(sliding_window=6),
    "deepseek_v2": MLA,
    "deepseek_v3": MLA,
    "gpt2": dict(n_inner=128),
    "gptj": dict(rotary_dim=8, n_inner=128),
    "codegen": dict(rotary_dim=8, n_inner=128, n_ctx=512),
    "opt": dict(ffn_dim=128, word_embed_proj_dim=64),
    "xglm": dict(ffn_dim=128),
    "bloom": dict(n_head=4),
    "mpt": dict(d_model=64, n_heads=4, n_layers=3, expansion_ratio=2, max_seq_len=512),
    "lfm2": dict(layer_types=["conv", "full_attention", "conv"]),
    "qwen3_next": dict(MOE, layer_types=["linear_attention", "full_attention", "linear_attention"],
                       linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
                       linear_value_head_dim=8, linear_conv_kernel_dim=4),
}  # fmt: skip

# Every family of the layout table, and what each granularity needs; hybrids lack attn in some layers.
FAMILIES = (
    "llama", "mistral", "ministral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral", "gemma", "gemma2",
    "gemma3_text", "phi", "phi3", "olmo", "olmo2", "olmo3", "granite", "cohere", "cohere2", "starcoder2",
    "smollm3", "glm", "glm4", "exaone4", "helium", "apertus", "arcee", "seed_oss", "ernie4_5",
    "hunyuan_v1_dense", "gpt_oss", "deepseek_v2", "deepseek_v3", "stablelm", "granitemoe", "gpt2", "gptj",
    "codegen", "gpt_neox", "opt", "bloom", "falcon", "xglm", "mpt", "lfm2", "qwen3_next",
)  # fmt: skip
HYBRID = {"lfm2", "qwen3_next"}


def tiny_family(model_type: str, seed: int = 0):
    """(engine model, independent reference copy, tokenizer) of a seeded tiny ``model_type``."""
    config = AutoConfig.for_model(model_type, **{**COMMON, **OVERRIDES.get(model_type, {})})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(
            config, attn_implementation=loadable_implementation(config), dtype=torch.float32
        )
    model.eval()
    model.generation_config.pad_token_id = PAD_ID
    return model, copy.deepcopy(model), build_tokenizer(VOCAB)
