"""End to end through HF_ENDPOINT: pulls from olah, a Hub mirror server from PyPI, serving local git repositories
on 127.0.0.1 with its upstream switched off. Skipped where olah (`pip install olah`) or git is not installed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from rest_hf.hub.models import prepare_for_hub

from .conftest import REPO_ID
from .helpers import MirrorApi

OLAH = shutil.which(
    "olah-cli", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
)
pytestmark = [
    pytest.mark.skipif(OLAH is None, reason="olah is not installed (pip install olah)"),
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
]


def _git(folder: Path, *args: str) -> None:
    identity = ["-c", "user.email=tests@rest-hf", "-c", "user.name=rest_hf tests"]
    subprocess.run(["git", *identity, *args], cwd=folder, check=True, capture_output=True)


def _publish(mirrors: Path, kind: str, repo_id: str, source: Path) -> Path:
    """`source` as the `main` branch of a git repository where olah looks for `kind` ("models", "datasets")."""
    repo = mirrors / kind / repo_id
    shutil.copytree(source, repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "upload")
    return repo


@pytest.fixture
def olah(tmp_path):
    """An olah server on a free local port, offline, serving `mirrors/`; yields (endpoint, mirrors folder)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mirrors = tmp_path / "mirrors"
    mirrors.mkdir()
    config = tmp_path / "olah.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [basic]
            host = "127.0.0.1"
            port = {port}
            mirror-netloc = "127.0.0.1:{port}"
            mirror-lfs-netloc = "127.0.0.1:{port}"
            repos-path = "{tmp_path / "olah-cache"}"
            mirrors-path = ["{mirrors}"]

            [accessibility]
            offline = true
            """
        )
    )
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path / "olah.log").open("w")
    server = subprocess.Popen([OLAH, "-c", str(config)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/api/models/none/none/revision/main", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"olah did not start: {(tmp_path / 'olah.log').read_text()[-2000:]}")
                time.sleep(0.25)
        yield endpoint, mirrors
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def _run(code: str, endpoint: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cwd / "cache"), HF_HOME=str(cwd / "hf_home"))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_model_pull_through_hf_endpoint(olah, saved_model, tmp_path):
    endpoint, mirrors = olah
    repo = _publish(
        mirrors, "models", REPO_ID, prepare_for_hub(saved_model.folder, tmp_path / "hub", model_id=REPO_ID)
    )
    _git(repo, "checkout", "-q", "-b", "v2")
    (repo / "README.md").write_text("# version 2\n")
    _git(repo, "commit", "-q", "-am", "v2 card")
    torch.save({"pixel_values": saved_model.pixel_values, "logits": saved_model.logits}, tmp_path / "io.pt")

    result = _run(
        f"""
        import torch
        from rest_hf import RestForSemanticSegmentation
        from rest_hf.hub.errors import HubError
        from rest_hf.hub.models import pull_model

        folder = pull_model({REPO_ID!r})
        assert folder.parent.name == "snapshots", folder
        model = RestForSemanticSegmentation.from_pretrained({REPO_ID!r}).eval()
        data = torch.load("io.pt")
        with torch.no_grad():
            torch.testing.assert_close(model(pixel_values=data["pixel_values"]).logits, data["logits"], rtol=0, atol=0)
        assert (pull_model({REPO_ID!r}, revision="v2") / "README.md").read_text() == "# version 2\\n"
        try:
            pull_model("org/missing")
        except HubError as error:
            assert "no model repository 'org/missing'" in str(error), error
        else:
            raise AssertionError("pulling a missing repository did not fail")
        print("pulled through", {endpoint!r})
        """,
        endpoint,
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"pulled through {endpoint}" in result.stdout


def test_dataset_split_pull_through_hf_endpoint(olah, water_root, tmp_path, monkeypatch):
    from rest_hf.hub.datasets import push_dataset

    endpoint, mirrors = olah
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    api = MirrorApi(tmp_path / "pushed")
    push_dataset(water_root, "org/water", layout="glh-water", token="hf_test", api=api, progress=False)
    _publish(mirrors, "datasets", "org/water", api.folder)

    result = _run(
        """
        from pathlib import Path
        from rest_hf.cli import main
        from rest_hf.data import scan_layout
        from rest_hf.hub.datasets import pull_dataset

        folder = pull_dataset("org/water", split="val")
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        assert [f for f in files if not f.startswith(("metadata/", "README"))] == ["val/image/c.tif", "val/label/c.png"], files
        assert [r.name for r in scan_layout(folder, "glh-water", "val")] == ["c"]
        print("dataset pulled")
        """,
        endpoint,
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dataset pulled" in result.stdout
