"""How every file and folder of the package reaches the disk: built under a temporary name, then renamed.

A reader never sees half a model, dataset, release or results file, and a failure (or an exception) leaves
whatever was there before as it was. Temporary names sit next to their target, so that the final rename stays
on one file system, and share one suffix, so that what a killed process left behind can be recognised.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

PARTIAL_SUFFIX = ".partial"


def temp_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden name next to ``path``: ``.{name}.{random}.partial`` (nothing is created)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


@contextmanager
def staged_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` for the caller to create (a file or a folder) and rename into place.

    Whatever is still at the temporary name on exit (the caller did not rename it, or an exception was raised)
    is removed. Made by the caller with ``mkdir`` or ``open``, it gets the umask's permissions, unlike
    ``tempfile``'s private 0700/0600, which would carry over to the output.
    """
    tmp = temp_sibling(path)
    try:
        yield tmp
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling renamed into place.

    The file keeps the mode of the one it replaces (the umask's for a new one).
    """
    path = Path(path)
    with staged_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            handle.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)


def sha256_file(path: str | os.PathLike, *, progress: bool = False) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks (with a byte progress bar when ``progress``)."""
    digest = hashlib.sha256()
    with (
        open(path, "rb") as file,
        tqdm(
            total=os.path.getsize(path),
            unit="B",
            unit_scale=True,
            desc="Verifying sha256",
            disable=not progress,
        ) as bar,
    ):
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()
