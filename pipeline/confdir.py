"""Where the Hydra configs are: the entry points compose from them and the tasks read their defaults."""

from __future__ import annotations

from pathlib import Path


def conf_dir() -> Path:
    """The Hydra configs: ``pipeline/conf`` in an installed wheel, the checkout's ``conf/`` otherwise.

    ``pyproject.toml`` maps the top-level ``conf/`` (their only source) to the ``pipeline.conf``
    package, so a non-editable ``pip install`` carries them; an editable install and a plain
    checkout read ``conf/`` beside the package.
    """
    here = Path(__file__).resolve().parent
    installed = here / "conf"
    return installed if (installed / "config.yaml").is_file() else here.parent / "conf"


CONF_DIR = conf_dir()
