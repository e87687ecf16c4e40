"""Outputs that never lose data: checked before any work, written aside, committed together.

One mechanism for every file the engine writes:

- :func:`check_outputs` refuses, before anything is read or computed, an output that is
  one of the command's inputs (paths resolved, symlinks and hard links included), two
  outputs at one path, an output that is a folder, an existing output without
  ``overwrite``, a missing or unwritable folder. Each refusal is one
  :class:`~engine.errors.InputError` (exit code 2) naming the file and what to do.
- :class:`OutputSet` hands out a temporary name beside each output
  (``.NAME.incomplete-TOKEN.SUFFIX``, same folder, so the final rename never crosses file
  systems); :meth:`OutputSet.commit` moves all of them into place only when every one
  is complete. On any failure or cancel nothing is left at the final paths (an existing
  file there is kept as it was) and the temporary files are removed.
- :func:`atomic_write_text` (one small file) and :func:`swap_into_place` (a folder, two
  renames) are the same idea for training's run folder.

Light module: standard library only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Union

from .errors import InputError

#: Files GDAL/QGIS keep beside a raster: they describe the old file and go with it.
SIDECARS = (".aux.xml", ".ovr", ".msk")
#: Files SQLite or GDAL may leave beside a temporary output while it is written.
TEMP_TAILS = ("-wal", "-shm", "-journal", ".aux.xml")

PathLike = Union[str, os.PathLike]  # evaluated at import: no 'X | Y' (Python 3.9 in QGIS)


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file (resolved paths, or the same inode)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def probe_writable(folder: Path) -> str | None:
    """None when a file can be created in ``folder``, else the reason (``Permission denied``).

    A real probe: ``os.access`` says yes to root on read-only or virtual file systems.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".masktalk-write-test-", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def check_outputs(outputs: Mapping[str, Path], inputs: Mapping[str, Path], overwrite: bool) -> None:
    """Refuse outputs that would lose data or cannot be written (see the module doc).

    Args:
        outputs: option name (``--out``) -> output path.
        inputs: option name (``--before``) -> input path (files or folders).
        overwrite: an existing output file may be replaced (only at commit).

    Raises:
        InputError: the first problem found, naming the option, the file and the fix.
    """
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        for in_flag, src in inputs.items():
            if same_file(path, src):
                raise InputError(f"{flag} {path} is the {in_flag} input ({src}); writing it would destroy the input. Choose another {flag} path")
        key = path.resolve()
        if key in seen:
            raise InputError(f"{flag} and {seen[key]} are the same file {path}; give each output its own path")
        seen[key] = flag
        _check_one(flag, path, overwrite)


def _check_one(flag: str, path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder; give a file path inside it, such as {path / ('changes' + (path.suffix or '.tif'))}")
    if path.exists() and not overwrite:
        raise InputError(f"{flag} {path} already exists; pass --overwrite to replace it, or choose another file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"{flag} {path}: folder {parent} does not exist; create it first or choose another folder")
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
    reason = probe_writable(parent)
    if reason:
        raise InputError(f"{flag} {path}: cannot write in folder {parent} ({reason}); choose a folder you can write to")


class OutputSet:
    """The outputs of one command: checked now, written under temporary names, committed together.

    Use as a context manager; leaving it without :meth:`commit` (an exception, a cancel)
    removes every temporary file and leaves the final paths as they were::

        with OutputSet({"--out": out, "--vectors": gpkg}, {"--before": before}, overwrite) as outputs:
            write_raster(outputs.temp("--out"))
            write_vectors(outputs.temp("--vectors"))
            outputs.commit()

    Args:
        outputs: option name -> output path (None entries are left out).
        inputs: option name -> input path (None entries are left out).
        overwrite: replace existing outputs at commit.

    Raises:
        InputError: from :func:`check_outputs`, before anything is written.
    """

    def __init__(self, outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | None] | None = None,
                 overwrite: bool = False) -> None:
        self.finals = {flag: Path(p) for flag, p in outputs.items() if p}
        self.inputs = {flag: Path(p) for flag, p in (inputs or {}).items() if p}
        self.overwrite = overwrite
        check_outputs(self.finals, self.inputs, overwrite)
        token = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._token = token
        self.temps = {flag: p.with_name(f".{p.stem}.incomplete-{token}{p.suffix}") for flag, p in self.finals.items()}
        self.committed = False

    def __contains__(self, flag: str) -> bool:
        return flag in self.finals

    def temp(self, flag: str) -> Path:
        """The temporary path to write the output of ``flag`` to."""
        return self.temps[flag]

    def final(self, flag: str) -> Path:
        return self.finals[flag]

    def commit(self) -> None:
        """Move every output into place; on failure put back what was there and raise.

        Raises:
            InputError: an output is missing (not written), or appeared at its final path
                meanwhile without ``overwrite``, or a rename failed (the reason is named).
        """
        for flag, tmp in self.temps.items():
            if not tmp.is_file():
                raise InputError(f"{flag} {self.finals[flag]} was not written; nothing was replaced")
            if self.finals[flag].exists() and not self.overwrite:
                raise InputError(f"{flag} {self.finals[flag]} was created by someone else meanwhile; pass --overwrite or choose another path")
        moved_aside: list[tuple[Path, Path]] = []
        placed: list[Path] = []
        try:
            for flag, tmp in self.temps.items():
                final = self.finals[flag]
                for old in (final, *[_with_tail(final, s) for s in SIDECARS]):
                    if old.exists():
                        aside = old.with_name(f".{old.name}.old-{self._token}")
                        os.replace(old, aside)
                        moved_aside.append((aside, old))
                for tail in ("", *SIDECARS):
                    src = _with_tail(tmp, tail)
                    if src.exists():
                        os.replace(src, _with_tail(final, tail))
                        placed.append(_with_tail(final, tail))
        except OSError as exc:
            for p in placed:
                p.unlink(missing_ok=True)
            for aside, old in reversed(moved_aside):
                os.replace(aside, old)
            raise InputError(f"cannot move the outputs into place ({exc.strerror or exc}: {exc.filename}); nothing was replaced") from None
        for aside, _ in moved_aside:
            aside.unlink(missing_ok=True)
        self.committed = True

    def abort(self) -> None:
        """Remove every temporary file (and what SQLite/GDAL left beside it)."""
        for tmp in self.temps.values():
            for tail in ("", *TEMP_TAILS):
                _with_tail(tmp, tail).unlink(missing_ok=True)

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, *exc) -> None:
        if not self.committed:
            self.abort()


def _with_tail(path: Path, tail: str) -> Path:
    return path.with_name(path.name + tail) if tail else path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file in the same folder (one rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder (one rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def swap_into_place(staging: Path, target: Path) -> None:
    """Replace the folder ``target`` by the complete folder ``staging`` (two renames).

    A crash between the renames leaves ``.TARGET.old-PID`` beside it, which
    :func:`engine.training.state.recover_run_dir` puts back.
    """
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
