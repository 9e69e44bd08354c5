"""Temporary files next to the outputs, stale-temporary clean-up, and replacing several outputs together.

Temporaries are named `.rest-hf-<host>-<pid>-<random>.tmp` in the output's folder: short (so any legal output
name works, even one of 255 bytes) and tagged with the writing process, so that a later run can remove the
ones a killed run left behind (SIGKILL leaves no chance to clean up) without touching those of a run still
going on, on this host or another one sharing the folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["publish_together", "remove_stale_temporaries", "temporary_path", "write_text_atomically"]

_PREFIX = ".rest-hf-"
_PATTERN = re.compile(r"^\.rest-hf-([0-9a-f]{6})-(\d+)-[0-9a-f]{8}\.(?:tmp|bak)(?:\.aux\.xml)?$")


def _host_tag() -> str:
    """Six hex digits naming this host (a shared folder may be written from several hosts)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def temporary_path(final: Path, kind: str = "tmp") -> Path:
    """A new hidden temporary path in the folder of `final` (`kind`: "tmp" or "bak")."""
    return final.parent / f"{_PREFIX}{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folders: Iterable[Path]) -> list[Path]:
    """Delete this command's temporaries (and backups) left in `folders` by dead processes of this host.

    Returns the removed paths. Temporaries of live processes and of other hosts are kept.
    """
    removed = []
    host = _host_tag()
    for folder in {Path(f) for f in folders}:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = _PATTERN.match(name)
            if match is None or match.group(1) != host or _alive(int(match.group(2))):
                continue
            try:
                (folder / name).unlink()
                removed.append(folder / name)
            except OSError:
                pass
    return sorted(removed)


def unlink_quietly(path: Path) -> None:
    """Remove a temporary and GDAL's `.aux.xml` side file, if there."""
    for candidate in (path, path.with_name(path.name + ".aux.xml")):
        with contextlib.suppress(OSError):
            candidate.unlink()


def publish_together(moves: Sequence[tuple[Path, Path]], overwrite: bool) -> list[Path]:
    """Rename each finished temporary onto its final path, all or none.

    The outputs that exist are first hard-linked (copied where the file system has no hard links) to backups,
    so the old outputs stay in place until the renames; if one rename fails, the outputs already replaced are
    restored from their backups and the new ones removed, so the folder holds either every new output or
    every old one. Renames within a folder do not fail for lack of space, so the only window where old and
    new outputs can mix is a SIGKILL between two renames.

    Args:
        moves: (finished temporary, final path) pairs.
        overwrite: Replace outputs that exist (otherwise FileExistsError before anything moves).

    Returns:
        The final paths.
    """
    import shutil

    for _, final in moves:
        if not overwrite and final.exists():
            raise FileExistsError(f"output {final} exists; pass --overwrite to replace it")
    backups: dict[Path, Path] = {}
    placed: list[Path] = []
    try:
        for _, final in moves:
            if final.exists():
                backup = temporary_path(final, "bak")
                try:
                    os.link(final, backup)
                except OSError:
                    shutil.copy2(final, backup)
                backups[final] = backup
        for tmp, final in moves:
            os.replace(tmp, final)
            placed.append(final)
    except BaseException:
        for final in placed:
            if final in backups:
                os.replace(backups.pop(final), final)
            else:
                final.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups.values():
            unlink_quietly(backup)
    return [final for _, final in moves]


def write_text_atomically(path: Path, text: str) -> Path:
    """Write a small text file (a JSON summary) through a temporary and a rename: never half a file.

    Raises:
        OSError: the folder cannot be created or written (full disk, read-only); nothing is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    return path
