"""Readers for the two data sources of the built-in tasks, with one-line errors naming the file.

* The authors' release: one JSON value per line; a language's files are paired line by line with
  the pivot's, so line counts must agree (checked on every file of a pair, cheaply, by counting
  newlines) and only the first ``limit`` lines are decoded.
* The original datasets through ``datasets.load_dataset``: a Hub id with a config name, or local
  files (``data_files``, with ``{lang}`` standing for the language) whose builder follows the
  extension. ``datasets`` is imported only here, and only when a hub task loads its data.
* Translations files for the cultural tasks' hub source: JSONL ``{"id", "source_prompt"}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.pilotset import Record


def require_file(path: Path, what: str) -> Path:
    """Returns ``path`` if it is a file, else raises a one-line error naming it."""
    if not path.is_file():
        raise PipelineError(f"missing {what}: {path}")
    return path


def count_lines(path: Path) -> int:
    """Number of lines of a text file (a last line without newline counts)."""
    count = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def check_paired(files: Sequence[Path]) -> int:
    """Checks that files paired line by line have equal line counts; returns the count."""
    counts = [count_lines(path) for path in files]
    for path, count in zip(files[1:], counts[1:]):
        if count != counts[0]:
            raise PipelineError(
                f"unequal line counts in paired files: {files[0]} has {counts[0]} lines, {path} has {count}"
            )
    return counts[0]


def read_json_lines(path: Path, limit: int | None = None) -> list[Any]:
    """Decodes the first ``limit`` lines (all when None) of a one-JSON-value-per-line file."""
    values = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(islice(handle, limit), start=1):
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise PipelineError(f"{path} line {number}: invalid JSON ({err.msg})") from None
    return values


@dataclass(frozen=True)
class ReleaseLine:
    """Line ``k`` (0-based) of a language's release files: its prompt, the pivot's, its answer."""

    lang: str
    k: int
    prompt: str
    source_prompt: str
    answer: Any
    answer_file: Path

    def record(self, task: str, split: str, answer: str, **choices: Any) -> Record:
        """The line as a :class:`Record` of item ``<task>-<split>-<k>``, answered in its own language."""
        item = f"{task}-{split}-{self.k:05d}"
        return Record(item, Instance(id=f"{item}-{self.lang}", lang=self.lang, prompt=self.prompt,
                                     source_prompt=self.source_prompt, answer=answer, response_lang=self.lang,
                                     **choices))  # fmt: skip


def release_lines(base: Path, file_name: Callable[[str], str], pivot: str, langs: Sequence[str],
                  limit: int | None) -> Iterator[ReleaseLine]:  # fmt: skip
    """The authors' release of a multilingual task, line by line: ``split/<file>`` holds the prompts,
    ``ans/<file>`` the answers, each paired line by line with the pivot's prompts (checked)."""
    pivot_file = base / "split" / file_name(pivot)
    sources = read_json_lines(pivot_file, limit)
    for lang in langs:
        prompt_file, answer_file = base / "split" / file_name(lang), base / "ans" / file_name(lang)
        check_paired([prompt_file, pivot_file])
        check_paired([prompt_file, answer_file])
        prompts = read_json_lines(prompt_file, limit)
        answers = read_json_lines(answer_file, limit)
        for k, (prompt, source, answer) in enumerate(zip(prompts, sources, answers)):
            yield ReleaseLine(lang, k, expect_str(prompt, prompt_file, k + 1), expect_str(source, pivot_file, k + 1),
                              answer, answer_file)  # fmt: skip


def expect_str(value: Any, path: Path, line: int, what: str = "a JSON string") -> str:
    """Returns ``value`` if it is a non-empty string, else an error naming file and line."""
    if not isinstance(value, str) or not value.strip():
        raise PipelineError(f"{path} line {line}: expected {what}, got {value!r:.60}")
    return value


def read_translations(path_value: Any, task: str, id_hint: str) -> dict[str, str]:
    """Reads a translations file (JSONL ``id`` -> ``source_prompt``) for a cultural hub task.

    Args:
        path_value: the configured ``task.translations``.
        task: the task name, for messages.
        id_hint: how the task's instance ids look (e.g. "culturalbench-<question_idx>").

    Raises:
        PipelineError: when no file is configured, it does not exist, or a line is malformed.
    """
    if path_value in (None, "", "???"):
        raise PipelineError(
            f"task {task}: task.translations is required with task.source=hub: a JSONL file of "
            '{"id": ..., "source_prompt": ...} giving each question in the culture\'s language '
            f"(ids: {id_hint})"
        )
    path = Path(str(path_value)).expanduser()
    if not path.is_file():
        raise PipelineError(f"task {task}: translations file not found: {path}")
    translations: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise PipelineError(f"{path} line {number}: invalid JSON ({err.msg})") from None
            if not isinstance(record, dict) or not {"id", "source_prompt"} <= set(record):
                raise PipelineError(f"{path} line {number}: expected an object with 'id' and 'source_prompt'")
            key = expect_str(record["id"], path, number, "'id' to be a non-empty string")
            if key in translations:
                raise PipelineError(f"{path} line {number}: duplicate id {key!r}")
            translations[key] = expect_str(record["source_prompt"], path, number, "a non-empty 'source_prompt'")
    return translations


def attach_translations(items: Sequence[Any], translations: Mapping[str, str], path: Any, task: str) -> None:
    """Fails when an instance id of ``items`` (objects with ``.instance.id``) has no translation."""
    missing = [record.instance.id for record in items if record.instance.id not in translations]
    if missing:
        raise PipelineError(
            f"task {task}: {len(missing)} instance(s) have no translation in {path}, e.g. {missing[0]!r}"
        )


def _builder(data_file: str) -> tuple[str, dict[str, Any]]:
    name = data_file.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith(".tsv"):
        return "csv", {"delimiter": "\t"}
    if name.endswith(".csv"):
        return "csv", {}
    if name.endswith((".json", ".jsonl")):
        return "json", {}
    if name.endswith(".parquet"):
        return "parquet", {}
    raise PipelineError(f"cannot tell the format of {data_file}: use a .tsv, .csv, .json(l)[.gz] or .parquet file")


def hub_rows(
    hub: Mapping[str, Any],
    lang: str | None,
    what: str,
    files_key: str = "data_files",
    name_key: str = "name",
    tsv_columns: Sequence[str] | None = None,
    json_field: str | None = None,
) -> list[dict[str, Any]]:
    """Loads one table of a dataset through ``datasets.load_dataset`` and returns its rows.

    Args:
        hub: the task's ``task.hub`` mapping: ``path`` (Hub id), ``name`` (config, may contain
            ``{lang}``), ``split``, ``revision``, ``cache_dir`` and ``data_files`` (local files,
            may contain ``{lang}``; when set, it replaces ``path``/``name``/``split``).
        lang: substituted for ``{lang}``.
        what: what is being loaded, for error messages (e.g. "XNLI de").
        files_key: the key of ``hub`` holding the local files for this table.
        name_key: the key of ``hub`` holding the config name for this table.
        tsv_columns: column names for header-less .tsv files (XTREME's XNLI files).
        json_field: top-level field holding the records of a .json file (SQuAD's "data").

    Raises:
        PipelineError: one line naming the dataset and the cause; no traceback.
    """
    import datasets

    data_files = hub.get(files_key)
    kwargs: dict[str, Any] = {"cache_dir": hub.get("cache_dir")}
    if data_files:
        data_file = str(data_files).replace("{lang}", lang or "")
        if not any(ch in data_file for ch in "*?[") and not Path(data_file).expanduser().is_file():
            raise PipelineError(f"{what}: data file not found: {data_file}")
        builder, extra = _builder(data_file)
        kwargs.update(extra)
        if builder == "csv" and "delimiter" in extra and tsv_columns:
            kwargs["column_names"] = list(tsv_columns)
        if builder == "json" and json_field and not data_file.lower().split(".gz")[0].endswith(".jsonl"):
            kwargs["field"] = json_field
        args: tuple[Any, ...] = (builder,)
        kwargs.update(data_files=str(Path(data_file).expanduser()), split="train")
    else:
        name = hub.get(name_key)
        args = (hub["path"],) if not name else (hub["path"], str(name).replace("{lang}", lang or ""))
        kwargs.update(split=hub["split"], revision=hub.get("revision"))
    try:
        dataset = datasets.load_dataset(*args, **kwargs)
    except Exception as err:  # datasets raises many types (offline, missing config, bad file)
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise PipelineError(f"{what}: could not load {args} ({type(err).__name__}: {message})") from None
    return dataset.to_list()
