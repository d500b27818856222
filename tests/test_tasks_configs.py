"""Every ``conf/task/*.yaml`` composes through Hydra, agrees with the registry, and is the tasks' only defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.errors import PipelineError
from pipeline.tasks import BUILTIN, TASK_NAMES, load_task
from sweeps import compose_task

from pipeline.cli import CONF_DIR

ROOT = Path(__file__).resolve().parents[2] / "shared" / "xtransplant-data"


def test_every_task_has_a_config_and_every_config_a_task() -> None:
    assert sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml")) == sorted(TASK_NAMES)


@pytest.mark.parametrize("cls", BUILTIN, ids=lambda cls: cls.NAME)
def test_the_yaml_defaults_are_valid_for_the_task(cls: type) -> None:
    """conf/task/<name>.yaml is the only place defaults are written: they must pass the task's checks."""
    defaults = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "task" / f"{cls.NAME}.yaml"))
    assert defaults.pop("defaults") == [f"{cls.NAME}_schema", "_self_"]  # its keys' types
    assert cls.defaults() == defaults
    assert set(defaults["langs"]) <= set(cls.LANGS) and defaults["source"] in cls.SOURCES
    needs = {"mkqa": "task.hub.data_files", "culturalbench": "task.translations"}  # no usable default
    if cls.NAME in needs:
        with pytest.raises(PipelineError, match=needs[cls.NAME].replace(".", r"\.")):
            cls({"name": cls.NAME})
    elif defaults["source"] == "hub":
        task = cls({"name": cls.NAME})
        assert task.config == defaults and task.langs == defaults["langs"]


def test_an_unknown_key_lists_the_yaml_keys() -> None:
    with pytest.raises(PipelineError, match="unknown key 'colour'; valid keys: name, source, split, langs"):
        load_task({"name": "xcopa", "colour": 1})
    with pytest.raises(PipelineError, match="unknown task.hub key 'x'; valid: path, name, split"):
        load_task({"name": "mkqa", "hub": {"x": 1}})


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


def test_load_task_rejects_unknown_names_and_non_mappings() -> None:
    with pytest.raises(PipelineError, match=r"unknown task 'xnli2'; valid tasks: xnli, xquad"):
        load_task({"name": "xnli2"})
    with pytest.raises(PipelineError, match=r"unknown task None"):
        load_task({})
    with pytest.raises(PipelineError, match=r"must be a mapping"):
        load_task(["xnli"])  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", BUILTIN, ids=lambda cls: cls.NAME)
def test_every_listed_language_has_a_template_a_cot_phrase_and_a_group(cls: type) -> None:
    from pipeline.tasks.languages import COT_PHRASE, TABLE3_GROUPS, base_code

    if cls.KIND == "multilingual":
        assert set(cls.LANGS) <= set(cls.TEMPLATE_LANGS)
    else:
        assert cls.TEMPLATE_LANGS == ("en",)
    assert all(base_code(lang) in COT_PHRASE for lang in cls.LANGS)
    assert sorted(lang for members in TABLE3_GROUPS[cls.NAME].values() for lang in members) == sorted(cls.LANGS)


# Paper Table 3, as printed (GlobalOpinionQA's zh is the release's zh-CN).
TABLE3 = {
    "xnli": ("ar de en es fr zh", "hi ru tr vi", "bg el sw ur"),
    "xquad": ("ar de en es zh", "hi ru tr vi", "el ro th"),
    "globalopinionqa": ("ar de en es fr ja zh-CN", "hi pt ru sv tr vi", "am el id sw tl uk ur"),
    "xcopa": ("en zh", "it tr vi", "ht id sw ta"),
    "mkqa": ("ar de en es fr ja zh", "it ko pt tr vi", "fi he hu nl no"),
    "culturalbench": ("ar de en es fr ja zh", "hi ko ru tr vi", "he ms pl tl"),
}
# Paper Appendix A.1: the PilotSets' languages.
PILOTSET_LANGS = {
    "xnli": "ar bg de el en es fr hi ru sw tr ur vi zh",
    "xquad": "ar de el en es hi ro ru th tr vi zh",
    "globalopinionqa": "am ar de el en es fr hi id ja pt ru sv sw tl tr uk ur vi zh-CN",
}


@pytest.mark.parametrize("name", list(TABLE3))
def test_each_task_has_its_table_3_groups(name: str, tmp_path: Path) -> None:
    translations = tmp_path / "t.jsonl"
    translations.write_text('{"id": "x", "source_prompt": "y"}\n')
    keys = {"xcopa": {"langs": ["en", "zh", "it", "tr", "vi", "ht", "id", "sw", "ta"], "hub": {"copa_data_files": "x"}},
            "mkqa": {"hub": {"data_files": "x.jsonl.gz"}}, "globalopinionqa": {"translations": str(translations)},
            "culturalbench": {"translations": str(translations)}}.get(name, {})
    task = load_task({"name": name, "source": "hub", **keys})
    expected = {group: members.split() for group, members in zip(("High", "Mid", "Low"), TABLE3[name])}
    assert {group: list(members) for group, members in task.groups.items()} == expected
    if name in PILOTSET_LANGS:
        assert sorted(task.langs) == sorted(PILOTSET_LANGS[name].split())


def test_table_3_never_puts_a_language_in_two_groups() -> None:
    from pipeline.tasks.languages import RESOURCE_GROUP, TABLE3_GROUPS, default_groups

    seen: dict[str, str] = {}
    for table in TABLE3_GROUPS.values():
        for group, members in table.items():
            for lang in members:
                assert seen.setdefault(lang, group) == group, lang
    assert seen == RESOURCE_GROUP
    assert default_groups(["pl", "et", "ro", "de"]) == {"High": ["de"], "Low": ["pl", "ro"]}  # et: not in Table 3
    assert default_groups(["de", "th"], "xnli") == {"High": ["de"], "Low": ["th"]}  # th: XQuAD's column


def test_templates_render_in_every_language() -> None:
    from pipeline.tasks import mkqa, xcopa, xnli, xquad
    from pipeline.tasks.languages import ROLES

    for lang, template in xnli.TEMPLATES.items():
        text = xnli.render(lang, "PREMISE", "HYPOTHESIS")
        assert text.startswith(template.human) and f"{template.premise}PREMISE\n" in text and "{" not in text
        assert text.endswith(template.assistant + template.lead) and "\n(3)" in text
        words = list(xnli.label_words(lang).values())
        assert len(set(words)) == 3
        assert not any(a in b for a in words for b in words if a != b)  # the choice rule needs distinct words
    for lang, template in xquad.TEMPLATES.items():
        text = xquad.render(lang, "CONTEXT", "QUESTION")
        assert f"{template.context}CONTEXT\n{template.question}QUESTION\n\n{template.assistant}" in text
    for lang in xcopa.PHRASES:
        cause, effect = xcopa.render(lang, "P", "A", "B", "cause"), xcopa.render(lang, "P", "A", "B", "effect")
        assert cause != effect and "(1) A\n(2) B" in cause
    for lang in mkqa.PHRASES:
        assert mkqa.render(lang, "QUESTION").startswith(ROLES[lang][0])


# ---------------------------------------------------------------- grid=coarse (paper Table 2)


@pytest.mark.parametrize(
    "task, granularity, pair",
    [("xnli", "attn_released", (5, 0)), ("xcopa", "attn_released", (5, 0)), ("xquad", "ffn", (0, 0)),
     ("mkqa", "ffn", (0, 0)), ("globalopinionqa", "ffn", (0, 0)), ("culturalbench", "ffn", (0, 0))],
)
def test_coarse_grid_is_table_2(task: str, granularity: str, pair: tuple[int, int]) -> None:
    from pipeline.sweep.plan import GridSpec, grid_granularities, grid_pairs

    coarse = GridSpec("coarse")
    assert grid_granularities(coarse, ["attn", "block"], task) == (granularity,)
    assert grid_pairs(coarse, 6, task) == [pair]
    as_paper = grid_granularities(GridSpec("coarse", attention="attn"), ["ffn"], task)
    assert as_paper == (("attn",) if granularity == "attn_released" else ("ffn",))


def test_coarse_attention_knob_from_the_grid_config(tmp_path: Path) -> None:
    from sweeps import compose_sweep

    from pipeline.sweep.plan import grid_granularities

    cfg = compose_sweep(["grid=coarse", f"out_dir={tmp_path}"])
    assert cfg.grid.attention == "attn_released" and grid_granularities(cfg.grid, ["attn"], "xnli") == ("attn_released",)
    cfg = compose_sweep(["grid=coarse", "grid.attention=attn", f"out_dir={tmp_path}"])
    assert grid_granularities(cfg.grid, ["ffn"], "xcopa") == ("attn",)
    bad = compose_sweep(["grid=coarse", "grid.attention=ffn", f"out_dir={tmp_path}"])
    with pytest.raises(PipelineError, match=r"grid\.attention='ffn' is not valid; choose one of: attn_released, attn"):
        grid_granularities(bad.grid, ["attn"], "xnli")
    with pytest.raises(PipelineError, match=r"no Table 2 setting for task 'sample'"):
        grid_granularities(cfg.grid, ["attn"], "sample")
    full = compose_sweep(["grid=full", "+grid.attention=attn", f"out_dir={tmp_path}"])
    with pytest.raises(PipelineError, match=r"grid\.attention applies to grid=coarse only, not grid=full"):
        grid_granularities(full.grid, ["attn"], "xnli")
    assert compose_sweep(["grid=full", f"out_dir={tmp_path}"]).grid.attention is None
