"""What the six built-in tasks share: config keys and checks, splits, CoT, groups and scoring.

Every built-in task turns a benchmark into parallel instances (target prompt, source prompt,
gold) from one of two sources:

* ``source=release``: the authors' released files under ``task.root`` (one JSON value per line,
  files of one language paired line by line with the pivot's);
* ``source=hub``: the original dataset through ``datasets.load_dataset`` (a Hub id, or local
  files through ``task.hub.data_files``), rendered with the paper's templates (its Table 5):
  XNLI and XQuAD with the release's own per-language templates (byte-identical prompts), the
  other tasks with our translations.

A subclass declares its constants and implements ``_release_records`` and/or ``_hub_records``
(reading through :mod:`pipeline.tasks.sources`); this base does the rest: config validation, the
PilotSet split, ``task.limit``, ``prompt=cot``, groups, scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.base import Task
from pipeline.tasks.languages import default_groups, with_cot
from pipeline.tasks.schemas import task_config, task_defaults
from pipeline.tasks.sources import require_file
from pipeline.tasks.pilotset import PILOT_SEED, PILOT_SIZE, Record, select_pilot, split_pool

SPLITS = ("pilot", "unseen", "all")
PROMPTS = ("default", "cot")
COT_MAX_NEW_TOKENS = 200
RELEASE_SUBSETS = {"pilot": ("sample",), "unseen": ("unseen",), "all": ("sample", "unseen")}
SPLIT_OF_SUBSET = {"sample": "pilot", "unseen": "unseen"}


def _is_missing(value: Any) -> bool:
    return value is None or value == "???"


class BuiltinTask(Task):
    """Base of the six benchmark tasks; the sweep sees only the :class:`~pipeline.tasks.base.Task` API.

    Args:
        cfg: the task's config mapping (``name`` plus the keys of :meth:`defaults`); missing keys
            take their defaults, unknown keys are an error.
    """

    NAME: ClassVar[str]
    KIND: ClassVar[str]  # "multilingual" (non-En <- pivot) or "cultural" (En <- culture language)
    RULE: ClassVar[str]  # scoring rule, see pipeline.tasks.scoring
    LANGS: ClassVar[tuple[str, ...]]  # the paper's languages (valid choices of task.langs)
    SOURCES: ClassVar[tuple[str, ...]] = ("hub",)
    RELEASE_DIR: ClassVar[str] = ""  # e.g. "XNLI" for <root>/XNLI/XNLI_{sample,unseen}
    RELEASE_FILE: ClassVar[str] = "{lang}.json"  # a language's file in each folder of the release
    TEMPLATE_LANGS: ClassVar[tuple[str, ...]] = ()  # languages our hub templates are written in

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The task's full default config: ``conf/task/<name>.yaml``, the one place it is written.

        Its keys and their types are the task's schema (:mod:`pipeline.tasks.schemas`); the checks
        that are the benchmark's own (languages, sources, splits, files) live in the task classes.
        """
        return task_defaults(cls.NAME)

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        if cfg.get("source", self.defaults()["source"]) not in self.SOURCES:  # before its keys: root is release's
            valid = ", ".join(self.SOURCES)
            raise PipelineError(f"task {self.NAME}: task.source={cfg['source']!r} is not valid; choose one of: {valid}")
        self.config = task_config(self.NAME, cfg)
        self.source = self._choice("source", self.SOURCES)
        self.split = self._choice("split", SPLITS)
        self.prompt_variant = self._choice("prompt", PROMPTS)
        self.langs = self._langs()
        self.pivot = self._pivot() if self.KIND == "multilingual" else None
        self.limit = self._positive_int("limit")
        self.pilot_size = self._positive_int("pilot_size")
        self.seed = self.config["seed"]
        self._groups = self._parse_groups()
        self.root = self._root() if self.source == "release" else None
        if self.source == "hub":
            self._check_templates()
        self._validate()
        self._records: list[Record] | None = None

    # ------------------------------------------------------------------ config checks

    def _choice(self, key: str, valid: Sequence[str]) -> str:
        value = self.config[key]
        if value not in valid:
            raise PipelineError(f"task {self.NAME}: task.{key}={value!r} is not valid; choose one of: {', '.join(valid)}")
        return value

    def _positive_int(self, key: str) -> int | None:
        value = self.config[key]  # an int or None, by the schema
        if value is not None and value < 1:
            raise PipelineError(f"task {self.NAME}: task.{key} must be >= 1, got {value}")
        return value

    def _lang_list(self, key: str, langs: list[str]) -> list[str]:
        if not langs or not all(langs):
            raise PipelineError(f"task {self.NAME}: task.{key} must be a non-empty list of language codes, got {langs!r}")
        if {"False", "True"} & set(langs):  # the schema's list[str] reads YAML's booleans as these
            raise PipelineError(
                f"task {self.NAME}: task.{key} holds a boolean ({langs}); YAML reads no/yes as booleans, quote them: 'no'"
            )
        if len(set(langs)) != len(langs):
            raise PipelineError(f"task {self.NAME}: task.{key} lists a language twice: {langs}")
        return langs

    def _rendered_from_templates(self) -> bool:
        """Multilingual hub tasks render every language from our templates: a template decides."""
        return self.KIND == "multilingual" and self.config["source"] == "hub"

    def _langs(self) -> list[str]:
        langs = self._lang_list("langs", self.config["langs"])
        if not self._rendered_from_templates():
            for lang in langs:
                if lang not in self.LANGS:
                    raise PipelineError(f"task {self.NAME}: unknown language {lang!r}; valid: {' '.join(self.LANGS)}")
        return langs

    def _pivot(self) -> str:
        pivot = self.config["pivot"]
        if not pivot:
            raise PipelineError(f"task {self.NAME}: task.pivot must be a language code, got {pivot!r}")
        if not self._rendered_from_templates() and pivot not in self.LANGS:
            raise PipelineError(f"task {self.NAME}: task.pivot={pivot!r} is not one of its languages: {' '.join(self.LANGS)}")
        return pivot

    def _parse_groups(self) -> dict[str, list[str]]:
        groups = self.config["groups"]  # group name -> languages, by the schema
        return default_groups(self.langs, self.NAME) if groups is None else groups

    def _root(self) -> Path:
        root = self.config["root"]
        if _is_missing(root):
            raise PipelineError(
                f"task {self.NAME}: task.root is required with task.source=release "
                "(the authors' data directory, e.g. task.root=../shared/xtransplant-data)"
            )
        path = Path(str(root)).expanduser()
        if not path.is_dir():
            raise PipelineError(f"task {self.NAME}: task.root directory not found: {path}")
        return path

    def template_langs(self) -> list[str]:
        """Languages whose prompt must be rendered from our templates (hub source)."""
        if self.KIND == "cultural":
            return ["en"]
        return list(dict.fromkeys([*self.langs, self.pivot]))

    def _check_templates(self) -> None:
        for lang in self.template_langs():
            if lang not in self.TEMPLATE_LANGS:
                raise PipelineError(
                    f"task {self.NAME}: no prompt template for language {lang!r}; "
                    f"templates exist for: {' '.join(self.TEMPLATE_LANGS)}"
                )

    def _validate(self) -> None:
        """Task-specific checks run at load time (files present, extra keys); none by default."""

    # ------------------------------------------------------------------ release helpers

    def release_dir(self, subset: str) -> Path:
        """``<root>/<DIR>/<DIR>_<subset>``, subset "sample" (the PilotSet) or "unseen"."""
        assert self.root is not None
        return self.root / self.RELEASE_DIR / f"{self.RELEASE_DIR}_{subset}"

    def release_subsets(self) -> tuple[str, ...]:
        """The released folders the configured split reads."""
        return RELEASE_SUBSETS[self.split]

    def release_file(self, lang: str) -> str:
        """The name of a language's file in a folder of the release (``xquad.de.json``)."""
        return self.RELEASE_FILE.format(lang=lang)

    def require_release_files(self, *folders: tuple[str, Sequence[str], str]) -> None:
        """Each ``(folder, languages, what)``: every language's file of that folder exists, in every
        released subset the split reads (checked when the task loads, before any work)."""
        for subset in self.release_subsets():
            base = self.release_dir(subset)
            for folder, langs, what in folders:
                for lang in langs:
                    require_file(base / folder / self.release_file(lang), f"{self.RELEASE_DIR} {lang} {what}")

    def hub_tag(self) -> str:
        """Names the loaded table in instance ids: the Hub split, or the local files' stem."""
        hub = self.config["hub"]
        if hub.get("data_files"):
            stem = Path(str(hub["data_files"])).name.replace("{lang}", "").split(".")[0].strip("-_.")
            return stem or "files"
        return str(hub["split"])

    # ------------------------------------------------------------------ the Task API

    def _release_records(self, subset: str) -> list[Record]:
        raise NotImplementedError

    def _hub_records(self) -> list[Record]:
        raise NotImplementedError

    def _finalize(self, records: list[Record]) -> list[Record]:
        """Completes the selected hub records (cultural tasks attach translations); identity here."""
        return records

    def _selected(self) -> list[Record]:
        """The configured split's records (``task.limit`` applied), before translations and CoT."""
        if self.source == "release":
            return [r for subset in self.release_subsets() for r in self._release_records(subset)]
        pool = self._hub_records()
        records = split_pool(pool, self.split, self.pilot_size, self.seed, parallel=self.KIND == "multilingual")
        if self.limit is None:
            return records
        taken: dict[str, int] = {}
        kept = []
        for record in records:
            count = taken.get(record.instance.lang, 0)
            if count < self.limit:
                kept.append(record)
                taken[record.instance.lang] = count + 1
        return kept

    def _complete(self, records: list[Record]) -> list[Record]:
        """Attaches what selection does not need: hub translations (cultural tasks), the CoT phrase."""
        if self.source == "hub":
            records = self._finalize(records)
        if self.prompt_variant == "cot":
            records = [Record(record.item, self._with_cot(record.instance)) for record in records]
        return records

    def pilot_records(self, n: int = PILOT_SIZE, seed: int = PILOT_SEED) -> list[Record]:
        """A PilotSet drawn from the configured split (see :func:`~pipeline.tasks.pilotset.select_pilot`).

        Drawn before translations are attached, so a cultural hub task only needs the drawn
        questions translated.
        """
        drawn = select_pilot(self._selected(), n, seed, parallel=self.KIND == "multilingual")
        return self._complete(drawn)

    def _with_cot(self, instance: Instance) -> Instance:
        target_lang = "en" if self.KIND == "cultural" else instance.lang
        source_lang = instance.lang if self.KIND == "cultural" else self.pivot
        return replace(
            instance,
            prompt=with_cot(instance.prompt, target_lang),
            source_prompt=with_cot(instance.source_prompt, source_lang),
        )

    @property
    def name(self) -> str:
        """The task name (``task.name``)."""
        return self.NAME

    def records(self) -> list[Record]:
        """The instances of :meth:`instances` with their parallel item keys (for PilotSets)."""
        if self._records is None:
            self._records = self._complete(self._selected())
        return list(self._records)

    def instances(self) -> list[Instance]:
        """All instances of the configured split and languages, language by language, in file order."""
        return [record.instance for record in self.records()]

    def rule(self, instance: Instance) -> str:
        """The task's scoring rule name (the same for every instance)."""
        return self.RULE

    @property
    def max_new_tokens(self) -> int | None:
        """200 for the CoT comparison (``task.prompt=cot``), else None (the run's budget)."""
        return COT_MAX_NEW_TOKENS if self.prompt_variant == "cot" else None

    def response_lang(self, lang: str) -> str:
        """The language a consistent response is written in: English for cultural tasks."""
        return "en" if self.KIND == "cultural" else lang
