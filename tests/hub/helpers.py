"""Helpers for the Hub tests: a pre-filled Hub cache, a Python that cannot import rest_hf, a Hub stand-in that
writes to a local folder, and small rasters."""

from __future__ import annotations

import hashlib
import json
import os
import site
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import CommitInfo
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils.sha import git_hash


def fill_hub_cache(
    cache_dir: Path, repo_id: str, folder: Path, *, revision: str = "main", repo_type: str = "model"
) -> str:
    """Lay `folder` out in a Hub cache as huggingface_hub does after a download; return the fake commit id.

    `<cache>/<type>s--org--name/blobs/<hash>` holds each file once, `snapshots/<commit>/<path>` links to the blob,
    `refs/<revision>` names the commit.
    """
    storage = cache_dir / f"{repo_type}s--{repo_id.replace('/', '--')}"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    commit = hashlib.sha1(b"".join(p.read_bytes() for p in files) + revision.encode()).hexdigest()
    for path in files:
        data = path.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        pointer = storage / "snapshots" / commit / path.relative_to(folder)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.unlink(missing_ok=True)
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    ref = storage / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return commit


def run_without_rest_hf(
    code: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `code` in a Python that cannot import rest_hf, from `cwd`.

    `-I -S`: no PYTHON* variables, no user site, no current folder on sys.path and no site processing, so the
    editable install's .pth finder never loads. The site-packages folders are then put back on sys.path by hand
    (without their .pth files), and a meta-path blocker refuses rest_hf in case it is installed there as a package.
    """
    prelude = textwrap.dedent(
        f"""
        import sys
        sys.path.extend({site.getsitepackages()!r})

        class _NoRestHf:
            def find_spec(self, name, path=None, target=None):
                if name == "rest_hf" or name.startswith("rest_hf."):
                    raise ModuleNotFoundError("rest_hf is blocked in this test", name=name)
                return None

        sys.meta_path.insert(0, _NoRestHf())
        try:
            import rest_hf
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("rest_hf is importable: the test cannot prove that the Hub code is self-contained")
        """
    )
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "TRANSFORMERS_"))}
    child_env.update(env or {})
    child_env.setdefault("HF_HOME", str(cwd / "hf_home"))
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class MirrorApi:
    """A Hub stand-in that applies each commit to `folder` (the repository's files) and lists them like the Hub.

    Files of 1 kB or more are listed as LFS files (sha256), smaller ones by their git blob hash, as on the Hub.
    `fail_after` commits succeed, then create_commit raises (the commit is not applied: commits are atomic).
    """

    folder: Path
    commits: list[list[str]] = field(default_factory=list)
    fail_after: int | None = None

    def create_repo(self, repo_id, **kwargs):
        self.folder.mkdir(parents=True, exist_ok=True)

    def create_branch(self, repo_id, **kwargs):
        pass

    def list_repo_tree(self, repo_id, **kwargs):
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            entry: dict[str, Any] = {"path": path.relative_to(self.folder).as_posix(), "size": len(data)}
            if len(data) >= 1024:
                sha = hashlib.sha256(data).hexdigest()
                entry.update(oid="0" * 40, lfs={"size": len(data), "oid": sha, "pointerSize": 130})
            else:
                entry["oid"] = git_hash(data)
            yield RepoFile(**entry)

    def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        if self.fail_after is not None and len(self.commits) >= self.fail_after:
            raise ConnectionError("connection reset during upload")
        for operation in operations:
            source = operation.path_or_fileobj
            target = self.folder / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source if isinstance(source, bytes) else Path(source).read_bytes())
        self.commits.append([operation.path_in_repo for operation in operations])
        return CommitInfo(
            commit_url=f"https://huggingface.co/datasets/{repo_id}/commit/{len(self.commits)}",
            commit_message=commit_message,
            commit_description="",
            oid=f"{len(self.commits):040d}",
        )


def write_raster(path: Path, array: np.ndarray, driver: str = "GTiff", georeferenced: bool = True) -> None:
    import rasterio
    from affine import Affine
    from rasterio.errors import NotGeoreferencedWarning

    path.parent.mkdir(parents=True, exist_ok=True)
    array = array if array.ndim == 3 else array[None]
    profile = dict(
        driver=driver, height=array.shape[1], width=array.shape[2], count=array.shape[0], dtype=array.dtype
    )
    if georeferenced:
        profile.update(crs="EPSG:32618", transform=Affine(0.3, 0, 500000, 0, -0.3, 4000000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array)
