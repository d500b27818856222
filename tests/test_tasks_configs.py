"""Every ``conf/task/*.yaml`` composes through Hydra and agrees with the registry and its code defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.errors import PipelineError
from pipeline.tasks import BUILTIN, TASK_NAMES, load_task
from pipeline.tasks.compose import CONF_DIR, compose_task, parse_argv

ROOT = Path(__file__).resolve().parents[2] / "shared" / "xtransplant-data"


def test_every_task_has_a_config_and_every_config_a_task() -> None:
    assert sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml")) == sorted(TASK_NAMES)


@pytest.mark.parametrize("cls", BUILTIN, ids=lambda cls: cls.NAME)
def test_yaml_mirrors_the_code_defaults(cls: type) -> None:
    assert OmegaConf.to_container(OmegaConf.load(CONF_DIR / "task" / f"{cls.NAME}.yaml")) == cls.defaults()


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_config_composes(name: str) -> None:
    config = compose_task(name, [])
    assert config["name"] == name


def test_overrides_compose_like_the_sweep() -> None:
    config = compose_task("xnli", [f"task.root={ROOT}", "task.langs=[de,zh]", "task.split=unseen", "task.limit=2"])
    task = load_task(config)
    assert [i.id for i in task.instances()] == [
        "xnli-unseen-00000-de", "xnli-unseen-00001-de", "xnli-unseen-00000-zh", "xnli-unseen-00001-zh"]
    assert compose_task("mkqa", [])["langs"][-1] == "no"
    assert load_task(compose_task("sample", [])).instances()


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("nope", [], r"unknown task 'nope'; valid tasks: xnli, xquad, globalopinionqa, xcopa, mkqa, culturalbench"),
        (None, [], r"no task given; valid tasks:"),
        ("xnli", ["task.nokey=1"], r"task xnli: Could not override 'task\.nokey'"),
        ("xnli", ["task.langs=[de"], r"task xnli: .*"),
    ],
)
def test_compose_errors_are_one_line(name: str | None, overrides: list[str], message: str) -> None:
    with pytest.raises(PipelineError, match=message) as info:
        compose_task(name, overrides)
    assert "\n" not in str(info.value)


def test_parse_argv() -> None:
    name, overrides, own = parse_argv(["task=xnli", "task.langs=[de]", "+task.x=1", "~task.y", "out=f"], ["out"], "u")
    assert (name, overrides, own) == ("xnli", ["task.langs=[de]", "+task.x=1", "~task.y"], {"out": "f"})
    with pytest.raises(PipelineError, match=r"unexpected argument 'model=tiny'; usage: u"):
        parse_argv(["model=tiny"], ["out"], "u")


def test_load_task_rejects_unknown_names_and_non_mappings() -> None:
    with pytest.raises(PipelineError, match=r"unknown task 'xnli2'; valid tasks: xnli, xquad"):
        load_task({"name": "xnli2"})
    with pytest.raises(PipelineError, match=r"unknown task None"):
        load_task({})
    with pytest.raises(PipelineError, match=r"must be a mapping"):
        load_task(["xnli"])  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", BUILTIN, ids=lambda cls: cls.NAME)
def test_every_listed_language_has_a_template_and_a_cot_phrase(cls: type) -> None:
    from pipeline.tasks.languages import COT_PHRASE, RESOURCE_GROUP, base_code

    if cls.KIND == "multilingual":
        assert set(cls.LANGS) <= set(cls.TEMPLATE_LANGS)
    else:
        assert cls.TEMPLATE_LANGS == ("en",)
    assert all(base_code(lang) in COT_PHRASE and lang in RESOURCE_GROUP for lang in cls.LANGS)


def test_templates_render_in_every_language() -> None:
    from pipeline.tasks import mkqa, xcopa, xnli, xquad
    from pipeline.tasks.languages import ROLES

    for lang in xnli.PHRASES:
        text = xnli.render(lang, "PREMISE", "HYPOTHESIS")
        assert text.startswith(ROLES[lang][0]) and "PREMISE" in text and "(3) " in text and "{" not in text
        assert len(set(xnli.label_words(lang).values())) == 3
        words = list(xnli.label_words(lang).values())
        assert not any(a in b for a in words for b in words if a != b)  # the choice rule needs distinct words
    for lang in xquad.PHRASES:
        assert "CONTEXT" in xquad.render(lang, "CONTEXT", "QUESTION") and ROLES[lang][1] in xquad.render(lang, "C", "Q")
    for lang in xcopa.PHRASES:
        cause, effect = xcopa.render(lang, "P", "A", "B", "cause"), xcopa.render(lang, "P", "A", "B", "effect")
        assert cause != effect and "(1) A\n(2) B" in cause
    for lang in mkqa.PHRASES:
        assert mkqa.render(lang, "QUESTION").startswith(ROLES[lang][0])
