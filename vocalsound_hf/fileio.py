"""How every file and folder of the package reaches the disk: built under a temporary name, then renamed.

A reader never sees half a model, dataset, release or results file, and a failure (or an exception) leaves
whatever was there before as it was. Temporary names sit next to their target, so that the final rename stays
on one file system, and name the host and process that own them, so that what a killed process left behind
is recognised and removed by the next ``staged_path`` for the same target.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
# What follows ``.{name}.`` in a temporary name: the owner's host tag and process id, and a random part.
_OWNER = re.compile(rf"(?P<host>[0-9a-f]{{8}})-(?P<pid>[1-9][0-9]*)-[0-9a-f]{{8}}{re.escape(PARTIAL_SUFFIX)}")


def _host_tag() -> str:
    """Eight hex digits of this host's name: a process id means something only on the host that issued it."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden name next to ``path``: ``.{name}.{host}-{pid}-{random}.partial`` (nothing is created)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a process of another user counts as alive)."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows: never take a pid for dead there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or a number no process has: not ours to judge
    return True


def remove_dead_siblings(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of ``path`` whose owning process is dead; return what was removed.

    Only names of ``temp_sibling``'s pattern, for this very ``path``, made on this host, are candidates; one
    whose process still runs (this one included) is kept, and so is anything else next to ``path``. A
    process id reused since by another process keeps a leftover for a later run, never the reverse.
    """
    path = Path(path)
    prefix, host = f".{path.name}.", _host_tag()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []  # no parent folder yet: nothing can be left there
    removed = []
    for entry in entries:
        owner = _OWNER.fullmatch(entry.name[len(prefix) :]) if entry.name.startswith(prefix) else None
        if owner is None or owner["host"] != host or _pid_alive(int(owner["pid"])):
            continue
        leftover = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        except FileNotFoundError:
            pass  # another run removed it first
        except OSError as err:
            logger.warning("could not remove %s, left by dead process %s: %s", leftover, owner["pid"], err)
            continue
        removed.append(leftover)
    if removed:
        logger.info(
            "removed %d leftover(s) of killed runs next to %s: %s",
            len(removed),
            path,
            ", ".join(p.name for p in removed),
        )
    return removed


@contextmanager
def staged_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` for the caller to create (a file or a folder) and rename into place.

    Whatever is still at the temporary name on exit (the caller did not rename it, or an exception was raised)
    is removed. Made by the caller with ``mkdir`` or ``open``, it gets the umask's permissions, unlike
    ``tempfile``'s private 0700/0600, which would carry over to the output. A process killed before that
    cleanup (SIGKILL, power loss) leaves its sibling behind: the next call for the same ``path`` removes it.
    """
    remove_dead_siblings(path)
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
