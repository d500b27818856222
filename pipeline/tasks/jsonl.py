"""``task=jsonl``: parallel prompts from a file in the JSONL task format (the engine issue's escape hatch).

One JSON object per line with ``id`` (str, unique), ``lang``, ``prompt`` (target prompt),
``source_prompt`` (the parallel prompt whose activations are transplanted), ``answer`` and the
optional ``choices`` (option labels), ``choice_aliases`` (label -> answer word), ``aliases``
(further accepted free-text answers), ``response_lang`` and ``scoring`` (one of
:data:`pipeline.tasks.scoring.RULES`; by default ``choice`` when ``choices`` is present, else
``contains``). ``pipeline.export`` and ``pipeline.pilot`` write this format, with ``scoring`` only
where a built-in task's rule differs from the default (GlobalOpinionQA's letter rule), so a
frozen file re-scores exactly like the task it came from.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.instances import Instance
from pipeline.tasks.base import Task
from pipeline.tasks.scoring import RULES, TRUE_FALSE, default_rule
from pipeline.tasks.languages import default_groups

REQUIRED = ("id", "lang", "prompt", "source_prompt", "answer")
OPTIONAL = ("choices", "choice_aliases", "aliases", "response_lang", "scoring")
FIELDS = REQUIRED + OPTIONAL


def _fail(where: str, message: str) -> PipelineError:
    return PipelineError(f"{where}: {message}")


def _string(where: str, field: str, value: object, non_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"field {field!r} must be a string, got {type(value).__name__}")
    if non_empty and not value.strip():
        raise _fail(where, f"field {field!r} is empty")
    return value


def _string_list(where: str, field: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(where, f"field {field!r} must be a list of non-empty strings")
    return tuple(value)


def parse_record(record: object, where: str) -> tuple[Instance, str]:
    """Validates one decoded line and turns it into an instance and its scoring rule.

    Args:
        record: the decoded JSON value of the line.
        where: "FILE line N", prefixed to every error.

    Returns:
        The instance and the name of its scoring rule.

    Raises:
        PipelineError: naming the file, line and field of the first problem.
    """
    if not isinstance(record, dict):
        raise _fail(where, f"expected a JSON object, got {type(record).__name__}")
    for field in REQUIRED:
        if field not in record:
            raise _fail(where, f"missing field {field!r}")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise _fail(where, f"unknown field {unknown[0]!r}; valid fields: {', '.join(FIELDS)}")
    values = {field: _string(where, field, record[field]) for field in REQUIRED}
    choices = None
    if record.get("choices") is not None:
        choices = _string_list(where, "choices", record["choices"])
        if len(set(choices)) != len(choices) or len(choices) < 2:
            raise _fail(where, "field 'choices' must hold at least two distinct labels")
        if values["answer"] not in choices:
            raise _fail(where, f"field 'answer' {values['answer']!r} is not one of choices {list(choices)}")
    choice_aliases = None
    if record.get("choice_aliases") is not None:
        raw = record["choice_aliases"]
        if not isinstance(raw, dict) or not all(isinstance(v, str) and v for v in raw.values()):
            raise _fail(where, "field 'choice_aliases' must map option labels to non-empty strings")
        if choices is None or not set(raw) <= set(choices):
            raise _fail(where, "field 'choice_aliases' has keys that are not in 'choices'")
        choice_aliases = dict(raw)
    aliases = _string_list(where, "aliases", record["aliases"]) if record.get("aliases") is not None else ()
    response_lang = None
    if record.get("response_lang") is not None:
        response_lang = _string(where, "response_lang", record["response_lang"])
    instance = Instance(
        id=values["id"],
        lang=values["lang"],
        prompt=values["prompt"],
        source_prompt=values["source_prompt"],
        answer=values["answer"],
        choices=choices,
        choice_aliases=choice_aliases,
        aliases=aliases,
        response_lang=response_lang,
    )
    return instance, _rule(record, instance, where)


def _rule(record: dict, instance: Instance, where: str) -> str:
    """The record's scoring rule: its ``scoring`` field, checked against the instance, else the default."""
    if record.get("scoring") is None:
        return default_rule(instance)
    rule = _string(where, "scoring", record["scoring"])
    if rule not in RULES:
        raise _fail(where, f"field 'scoring' {rule!r} is not one of {', '.join(RULES)}")
    if rule == "choice" and instance.choices is None:
        raise _fail(where, "field 'scoring' is 'choice' but there are no 'choices'")
    if rule == "truefalse" and instance.answer not in TRUE_FALSE:
        raise _fail(where, f"field 'scoring' is 'truefalse' but 'answer' {instance.answer!r} is not True or False")
    return rule


def read_jsonl(path: str | os.PathLike) -> list[tuple[Instance, str]]:
    """Reads and validates a JSONL task file (blank lines are skipped).

    Raises:
        PipelineError: missing file, invalid JSON, missing/wrong/empty field, duplicate id or
            an empty file, each naming the file and line.
    """
    file = Path(path)
    if not file.is_file():
        raise PipelineError(f"task file not found: {file}")
    parsed: list[tuple[Instance, str]] = []
    first_line: dict[str, int] = {}
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{file} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise _fail(where, f"invalid JSON ({err.msg} at column {err.colno})") from None
            instance, rule = parse_record(record, where)
            if instance.id in first_line:
                raise _fail(where, f"duplicate id {instance.id!r} (first on line {first_line[instance.id]})")
            first_line[instance.id] = number
            parsed.append((instance, rule))
    if not parsed:
        raise PipelineError(f"{file}: no instances (the file is empty)")
    return parsed


def to_record(instance: Instance, rule: str) -> dict:
    """The JSONL task format of ``instance``, keys in a fixed order (optional keys only when set)."""
    record: dict = {
        "id": instance.id,
        "lang": instance.lang,
        "prompt": instance.prompt,
        "source_prompt": instance.source_prompt,
        "answer": instance.answer,
    }
    if instance.choices is not None:
        record["choices"] = list(instance.choices)
    if instance.choice_aliases:
        record["choice_aliases"] = dict(instance.choice_aliases)
    if instance.aliases:
        record["aliases"] = list(instance.aliases)
    if instance.response_lang is not None and instance.response_lang != instance.lang:
        record["response_lang"] = instance.response_lang
    if rule != default_rule(instance):
        record["scoring"] = rule
    return record


def write_jsonl(path: str | os.PathLike, rows: Iterable[tuple[Instance, str]]) -> int:
    """Validates ``rows`` and writes them atomically (temp file + rename) as a JSONL task file.

    Every row is round-tripped through :func:`parse_record` first; nothing is written when one
    fails or ids repeat. Output is byte-stable: UTF-8, unescaped, one object per line.

    Returns:
        The number of instances written.
    """
    target = Path(path)
    lines: list[str] = []
    seen: set[str] = set()
    for number, (instance, rule) in enumerate(rows, start=1):
        record = to_record(instance, rule)
        parse_record(record, f"instance {number} ({instance.id!r})")
        if instance.id in seen:
            raise PipelineError(f"instance {number}: duplicate id {instance.id!r}; nothing written")
        seen.add(instance.id)
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    if not lines:
        raise PipelineError(f"no instances to write to {target}; nothing written")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(lines)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(lines)


class JsonlTask(Task):
    """Instances read from a JSONL task file; scored per line by the format's rule.

    Args:
        path: the JSONL file.
        groups: resource groups for the reports; defaults to Table 3's groups of the file's
            languages.
        id_prefix: prepended to every id (the bundled sample uses it to keep subsets apart).
        rule: forces one scoring rule for every line instead of the format's default.
    """

    name = "jsonl"

    def __init__(
        self,
        path: str | os.PathLike,
        groups: Mapping[str, Sequence[str]] | None = None,
        id_prefix: str = "",
        rule: str | None = None,
    ) -> None:
        parsed = read_jsonl(path)
        self._rules: dict[str, str] = {}
        self._instances: list[Instance] = []
        for instance, line_rule in parsed:
            if id_prefix:
                instance = replace(instance, id=f"{id_prefix}{instance.id}")
            self._instances.append(instance)
            self._rules[instance.id] = rule or line_rule
        langs = list(dict.fromkeys(instance.lang for instance in self._instances))
        self._groups = {k: list(v) for k, v in groups.items()} if groups else default_groups(langs)

    def instances(self) -> list[Instance]:
        """The file's instances, in file order."""
        return list(self._instances)

    def rule(self, instance: Instance) -> str:
        """The scoring rule of ``instance`` (the ``scoring`` field or the format's default)."""
        return self._rules.get(instance.id) or default_rule(instance)

