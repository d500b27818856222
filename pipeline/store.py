"""A run's result store: a local folder, a shared mount, or a bucket, opened once through pyarrow.fs.

``out_dir`` (sweep) and ``run=`` (reduce, select, export) take a local path or a URI that
``pyarrow.fs.FileSystem.from_uri`` opens: ``file:///abs/path``, ``s3://bucket/prefix`` (with
query options such as ``?endpoint_override=127.0.0.1:9000&scheme=http`` for an S3-compatible
server), ``gs://bucket/prefix``, ``hdfs://namenode/path``. Credentials come the way pyarrow finds
them (for S3: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE``, the instance
role, ...). Every read and write of shards, ``run.json``, features and the run's lock goes
through a :class:`Store`, so a local folder and a bucket behave alike.

Atomicity: on a local filesystem a file is written to a temporary sibling and renamed into place
(``os.replace``); on an object store a single PUT is atomic by itself (an object is visible whole
or not at all), so it is written to its final key directly. Either way a reader never sees half
a file.

Only the sweep's driver writes into a store (workers return their shard's Arrow table to it, see
``pipeline.sweep``), so a local ``out_dir`` is always the driver's own disk, whatever node
computed a shard.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.files import umask


def is_uri(location: str | Path) -> bool:
    """Whether ``location`` names a store by URI (``scheme://...``) rather than a local path."""
    return "://" in str(location)


_SECRET_PARAM = re.compile(r"([?&][^=&#]*(?:key|secret|token|password|passwd|credential|signature)[^=&#]*=)[^&#]*", re.I)


def redact(location: str | Path) -> str:
    """``location`` as it may be shown or stored: a URI's credentials (``user:secret@`` and query
    parameters named like keys, secrets, tokens, passwords) replaced by ``***``; a path as it is.

    pyarrow accepts ``s3://ACCESS:SECRET@bucket/prefix``; a run's logs, ``run.json``, reports and
    errors name the store through this, never the raw URI.
    """
    text = str(location)
    if not is_uri(text):
        return text
    scheme, rest = text.split("://", 1)
    authority, sep, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return _SECRET_PARAM.sub(r"\1***", f"{scheme}://{authority}{sep}{tail}")


@dataclass(frozen=True)
class Store:
    """A folder of results in some filesystem; paths inside it are relative, '/'-separated.

    Attributes:
        uri: where the store is, as messages name it (an absolute local path, or the URI given).
        fs: the pyarrow filesystem.
        root: the store's path inside ``fs`` (for S3: ``bucket/prefix``).
    """

    uri: str
    fs: pafs.FileSystem
    root: str

    @classmethod
    def open(cls, location: str | Path) -> Store:
        """Opens a local path (made absolute) or a URI; one error line if the URI cannot be opened."""
        text = str(location)
        if not is_uri(text):
            path = str(Path(text).expanduser().resolve())
            return cls(path, pafs.LocalFileSystem(), path)
        try:
            fs, root = pafs.FileSystem.from_uri(text)
        except (pa.ArrowException, OSError, ValueError) as err:
            message = " ".join(str(err).split()).replace(text, redact(text))
            raise PipelineError(f"cannot open the result store {redact(text)}: {message}") from err
        if isinstance(fs, pafs.LocalFileSystem):  # file:///abs/path is a local folder
            return cls(str(Path(root).resolve()), fs, str(Path(root).resolve()))
        return cls(text, fs, root.rstrip("/"))

    # -- naming ------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def local_path(self) -> Path:
        """The store as a local directory (local stores only)."""
        if not self.is_local:
            raise PipelineError(f"{self.describe()} is not a local directory")
        return Path(self.root)

    @property
    def name(self) -> str:
        return self.root.rstrip("/").rsplit("/", 1)[-1]

    def path(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` inside the store."""
        return f"{self.root}/{rel}" if rel else self.root

    def describe(self, rel: str = "") -> str:
        """``rel`` as messages name it: a local path, or the store's URI (query and credentials
        dropped, :func:`redact`) + ``/rel``."""
        if self.is_local:
            return self.path(rel)
        base = redact(self.uri.split("?", 1)[0]).rstrip("/")
        return f"{base}/{rel}" if rel else base

    def sibling(self, name: str) -> Store:
        """Another store beside this one (``overwrite=true`` moves a run aside into one)."""
        root = f"{self.root.rstrip('/').rsplit('/', 1)[0]}/{name}"
        return Store(root if self.is_local else self._uri_with_root(root), self.fs, root)

    def child(self, rel: str) -> Store:
        """The store of a folder inside this one (a report written into a run)."""
        uri = self.path(rel) if self.is_local else self._uri_with_root(self.path(rel))
        return Store(uri, self.fs, self.path(rel))

    def _uri_with_root(self, root: str) -> str:
        head, _, query = self.uri.partition("?")
        return head.replace(self.root, root, 1) + (f"?{query}" if query else "")

    # -- reading -----------------------------------------------------------------------------
    def info(self, rel: str = "") -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path(rel))
        except (pa.ArrowException, OSError) as err:
            raise PipelineError(f"cannot read {self.describe(rel)}: {' '.join(str(err).split())}") from err

    def is_file(self, rel: str) -> bool:
        return self.info(rel).type == pafs.FileType.File

    def is_dir(self, rel: str = "") -> bool:
        return self.info(rel).type == pafs.FileType.Directory

    def exists(self, rel: str = "") -> bool:
        return self.info(rel).type != pafs.FileType.NotFound

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as stream:
            return stream.read()

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open_input_file(self.path(rel)) as f:
            return pq.read_table(f, columns=columns)

    def parquet_footer(self, rel: str) -> tuple[int, list[str]]:
        """(row count, column names) from a Parquet file's footer alone."""
        with self.fs.open_input_file(self.path(rel)) as f:
            meta = pq.ParquetFile(f).metadata
            return meta.num_rows, meta.schema.to_arrow_schema().names

    def files(self, rel: str = "", suffix: str = "", hidden: bool = True) -> list[str]:
        """Relative paths of the files below ``rel`` ending in ``suffix``, sorted.

        ``hidden=False`` leaves out files and folders whose names start with '.' or '_'
        (temporary files, locks, markers), as ``pyarrow.dataset`` does.
        """
        if self.info(rel).type != pafs.FileType.Directory:
            return []
        selector = pafs.FileSelector(self.path(rel), recursive=True, allow_not_found=True)
        found = []
        for entry in self.fs.get_file_info(selector):
            if entry.type != pafs.FileType.File or not entry.path.endswith(suffix):
                continue
            inner = entry.path[len(self.root) :].lstrip("/")
            if hidden or not any(part.startswith((".", "_")) for part in inner.split("/")):
                found.append(inner)
        return sorted(found)

    # -- writing -----------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Writes ``rel`` whole or not at all (see the module docstring), with the user's umask locally.

        Raises:
            PipelineError: the store refused the write (a full disk, no permission, a store that
                answers with an error), in one line naming the file; nothing half-written stays.
        """
        try:
            if not self.is_local:
                with self.fs.open_output_stream(self.path(rel)) as out:
                    out.write(data)
                return
            path = Path(self.path(rel))
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                os.fchmod(fd, 0o666 & ~umask())
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except (OSError, pa.ArrowException) as err:
            why = err.strerror if isinstance(err, OSError) and err.strerror else " ".join(str(err).split())
            raise PipelineError(f"cannot write {self.describe(rel)}: {redact(why)}; nothing of it was kept "
                                "(a re-run resumes from the files that are whole)") from err  # fmt: skip

    def write_table(self, rel: str, table: pa.Table) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.write_bytes(rel, sink.getvalue())

    def write_json(self, rel: str, data: dict) -> None:
        self.write_bytes(rel, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())

    def move(self, src: str, dst: str) -> None:
        """Renames one file inside the store (on an object store: copy, then delete)."""
        self.fs.move(self.path(src), self.path(dst))

    def delete(self, rel: str) -> None:
        self.fs.delete_file(self.path(rel))

    def move_to(self, other: Store, keep: frozenset[str] = frozenset()) -> None:
        """Moves everything in the store to ``other`` (a new sibling) but the top-level names in ``keep``
        (the lock, held while this runs): renames locally, file by file on an object store."""
        if self.is_local:
            Path(other.root).mkdir()
            for entry in Path(self.root).iterdir():
                if entry.name not in keep:
                    entry.rename(Path(other.root) / entry.name)
            return
        for rel in self.files():
            if rel.split("/", 1)[0] not in keep:
                self.fs.move(self.path(rel), other.path(rel))

    def unused_sibling(self, name: str) -> Store:
        """A sibling named ``name`` or, if that exists, ``name-2``, ``name-3``, ...: never an existing one."""
        candidate, k = self.sibling(name), 1
        while candidate.info().type != pafs.FileType.NotFound:
            k += 1
            candidate = self.sibling(f"{name}-{k}")
        return candidate
