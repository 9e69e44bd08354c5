"""`rest-hf push ... --space`: the Space repository's files field by field, and the model card's link to it,
through a Hub stand-in that applies the commits to local folders."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, SpaceCard

import rest_hf
from rest_hf.cli import main
from rest_hf.hub.space import SPACE_REQUIREMENTS, space_url

from .conftest import REPO_ID
from .helpers import MirrorApi

SPACE_ID = "rest-hf-test/tiny-swin-demo"


@dataclass
class MirrorHub:
    """One `MirrorApi` per repository (models and Spaces), and every create_repo call."""

    root: Path
    repos: dict[str, MirrorApi] = field(default_factory=dict)
    created: list[tuple[str, dict]] = field(default_factory=list)

    def mirror(self, repo_id: str) -> MirrorApi:
        return self.repos.setdefault(repo_id, MirrorApi(self.root / repo_id))

    def create_repo(self, repo_id, **kwargs):
        self.created.append((repo_id, kwargs))
        self.mirror(repo_id).create_repo(repo_id, **kwargs)

    def create_branch(self, repo_id, **kwargs):
        pass

    def create_commit(self, repo_id, operations, **kwargs):
        return self.mirror(repo_id).create_commit(repo_id, operations, **kwargs)


@pytest.fixture
def hub(tmp_path, monkeypatch, hub_online) -> MirrorHub:
    mirror = MirrorHub(tmp_path / "hub")
    monkeypatch.setattr("rest_hf.hub.models.HfApi", lambda: mirror)
    monkeypatch.setattr("rest_hf.hub.space.HfApi", lambda: mirror)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    return mirror


def _version(name: str) -> str:
    return metadata.version(name).split("+", 1)[0]


def test_push_with_space_creates_a_gradio_space_and_links_it_from_the_card(saved_model, hub, capsys):
    assert main(["push", str(saved_model.folder), REPO_ID, "--space", SPACE_ID, "--revision", "v1"]) == 0
    out = capsys.readouterr().out
    assert f"created the Space {space_url(SPACE_ID)} (" in out

    assert hub.created[0] == (
        REPO_ID,
        {"repo_type": "model", "private": False, "exist_ok": True, "token": "hf_test"},
    )
    space_id, kwargs = hub.created[1]
    assert space_id == SPACE_ID
    assert kwargs == {
        "repo_type": "space",
        "space_sdk": "gradio",
        "private": False,
        "exist_ok": True,
        "token": "hf_test",
    }
    assert len(hub.repos[SPACE_ID].commits) == 1  # one commit: the Space appears whole or not at all

    space = hub.root / SPACE_ID
    card = SpaceCard.load(space / "README.md")
    data = card.data
    try:
        gradio_version = _version("gradio")
    except metadata.PackageNotFoundError:
        from rest_hf.hub.space import GRADIO_VERSION as gradio_version
    assert data.sdk == "gradio" and data.sdk_version == gradio_version
    assert data.app_file == "app.py"
    assert data.models == [REPO_ID]
    assert data.license == "apache-2.0"
    assert data.title == "tiny-swin-demo"
    assert str(data.python_version).count(".") == 1
    assert {"rest_hf", "remote-sensing", "semantic-segmentation"} <= set(data.tags)
    assert f"https://huggingface.co/{REPO_ID}" in card.text

    requirements = [
        line
        for line in (space / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert requirements == [f"{name}=={_version(name)}" for name in SPACE_REQUIREMENTS]
    assert not any(line.lower().startswith("gradio") for line in requirements)  # the Hub installs Gradio

    app = ast.parse((space / "app.py").read_text())
    assigned = {
        node.targets[0].id: ast.literal_eval(node.value) for node in app.body if isinstance(node, ast.Assign)
    }
    assert assigned == {"MODEL_ID": REPO_ID, "REVISION": "v1"}
    assert "from rest_hf.demo import serve_space" in (space / "app.py").read_text()

    package = Path(rest_hf.__file__).parent
    sources = sorted(
        p.relative_to(package).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts
    )
    shipped = sorted(p.relative_to(space / "rest_hf").as_posix() for p in (space / "rest_hf").rglob("*.py"))
    assert shipped == sources and "demo/app.py" in shipped
    assert all((space / "rest_hf" / name).read_bytes() == (package / name).read_bytes() for name in sources)

    model_card = ModelCard.load(hub.root / REPO_ID / "README.md")
    assert f"(https://huggingface.co/spaces/{SPACE_ID})" in model_card.text


def test_an_existing_card_gets_the_space_link_once(saved_model, hub, tmp_path):
    import shutil

    folder = tmp_path / "with-card"
    shutil.copytree(saved_model.folder, folder)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n\n# My model\n\nText.\n")
    assert main(["push", str(folder), REPO_ID, "--space", SPACE_ID]) == 0
    text = (hub.root / REPO_ID / "README.md").read_text()
    assert text.startswith("---\nlicense: mit\n---\n\n# My model\n\n**Try it in the browser:**")
    assert text.count(f"/spaces/{SPACE_ID})") == 1
    (folder / "README.md").write_text(text)
    assert main(["push", str(folder), REPO_ID, "--space", SPACE_ID]) == 0
    assert (hub.root / REPO_ID / "README.md").read_text().count(f"/spaces/{SPACE_ID})") == 1


def test_a_failed_space_says_the_model_is_pushed(saved_model, hub, monkeypatch, capsys):
    def refuse(repo_id, **kwargs):
        if kwargs.get("repo_type") == "space":
            raise ConnectionError("connection reset")
        hub.mirror(repo_id).create_repo(repo_id)

    monkeypatch.setattr(hub, "create_repo", refuse)
    assert main(["push", str(saved_model.folder), REPO_ID, "--space", SPACE_ID]) == 2
    captured = capsys.readouterr()
    assert "pushed" in captured.out and (hub.root / REPO_ID / "model.safetensors").is_file()
    error = captured.err.strip()
    assert (
        error.startswith("rest-hf push: error: the model is pushed, but not the Space: ")
        and "\n" not in error
    )
    assert (
        f"cannot create the Space {SPACE_ID} for {REPO_ID}" in error and "run the same command again" in error
    )
    assert not (hub.root / SPACE_ID).exists()


def test_push_refuses_a_space_that_is_not_a_hub_id(saved_model, hub, capsys):
    assert main(["push", str(saved_model.folder), REPO_ID, "--space", "just-a-name"]) == 2
    assert "is not a Hub id; use the form org/name" in capsys.readouterr().err
    assert hub.created == []
