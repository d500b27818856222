"""Language consistency (paper Table 1): is a response written in the language it should be in?

The paper identifies each response's language with fastText's ``lid.176.bin``; any fastText
supervised model whose labels are ``__label__<code>`` works (``report.lid_model=PATH``). Codes
are compared on their primary subtag, lower-cased ("zh-CN" and "zh" match). An empty response is
inconsistent. Responses repeat a lot across the N x N configs of an instance, so each distinct
response of a batch is identified once (and cached across batches).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import PipelineError

_LABEL = "__label__"


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
