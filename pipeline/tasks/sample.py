"""``task=sample``: the bundled demo, a few parallel items in the style of the paper's three pilot tasks.

Our own small examples (not the authors' data), shipped in ``pipeline/data/sample/`` in the JSONL
task format: ``xnli.jsonl`` (three options with label words, non-English target <- English
source), ``xquad.jsonl`` (short context + question, free-text answer) and
``globalopinionqa.jsonl`` (English target <- culture-language source, lettered options). Each
subset keeps its benchmark's scoring rule; ids are prefixed by the subset ("xnli-de-1"). Prompts
are short so that the default demo runs a tiny random model on CPU quickly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.base import Task
from pipeline.tasks.jsonl import JsonlTask
from pipeline.tasks.languages import default_groups
from pipeline.tasks.schemas import task_config

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
SUBSET_RULES = {"xnli": "choice", "xquad": "contains", "globalopinionqa": "letter"}


class SampleTask(Task):
    """The bundled sample; loadable with no arguments (``load_task({"name": "sample"})``).

    Args:
        cfg: ``subsets`` (any of xnli, xquad, globalopinionqa; default all three, in that
            order) and ``groups`` (default: Table 3's groups of the sample's languages).
    """

    name = "sample"

    def __init__(self, cfg: Mapping[str, Any] | None = None) -> None:
        cfg = task_config("sample", dict(cfg or {"name": "sample"}))  # conf/task/sample.yaml under cfg
        subsets = cfg["subsets"]
        for subset in subsets:
            if subset not in SUBSET_RULES:
                raise PipelineError(f"task sample: unknown subset {subset!r}; valid: {', '.join(SUBSET_RULES)}")
        self._rules: dict[str, str] = {}
        self._instances: list[Instance] = []
        for subset in dict.fromkeys(subsets):
            part = JsonlTask(SAMPLE_DIR / f"{subset}.jsonl", id_prefix=f"{subset}-", rule=SUBSET_RULES[subset])
            for instance in part.instances():
                self._instances.append(instance)
                self._rules[instance.id] = SUBSET_RULES[subset]
        groups = cfg.get("groups")
        langs = list(dict.fromkeys(instance.lang for instance in self._instances))
        self._groups = {k: list(v) for k, v in groups.items()} if groups else default_groups(langs)

    def instances(self) -> list[Instance]:
        """The chosen subsets' instances, subset by subset, in file order."""
        return list(self._instances)

    def rule(self, instance: Instance) -> str:
        """The scoring rule of the instance's subset."""
        return self._rules[instance.id]

