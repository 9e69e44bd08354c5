"""Helpers for the Hub tests: a pre-filled Hub cache and a Python that cannot import rest_hf."""

from __future__ import annotations

import hashlib
import json
import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any


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
