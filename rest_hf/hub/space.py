"""A Gradio Space for a pushed rest_hf model: `app.py`, `requirements.txt`, `README.md` and the rest_hf package.

The Space runs rest_hf's own demo (`rest_hf.demo.serve_space`) on that model. rest_hf is not on PyPI, so its
Python sources go into the Space as a `rest_hf/` folder next to `app.py` (Python finds it there); the Space
installs the libraries rest_hf needs from `requirements.txt`, pinned to the versions of the environment that
pushes it (what the pusher ran the demo with), and Gradio from `sdk_version` in the README's metadata (the
Hub installs Gradio itself: it must not be in `requirements.txt`).
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, SpaceCard, SpaceCardData

from .errors import explain, require_online, require_token

__all__ = ["SPACE_REQUIREMENTS", "package_files", "push_space", "space_contents", "space_url"]

# The distributions rest_hf's demo imports at run time (`rest_hf[demo]` without Gradio, which the Hub installs).
SPACE_REQUIREMENTS = (
    "torch",
    "transformers",
    "huggingface_hub",
    "safetensors",
    "accelerate",
    "numpy",
    "tqdm",
    "pyyaml",
    "rasterio",
    "pillow",
    "psutil",
)
# The Gradio release the tested stack pins (constraints.txt), used when Gradio is not installed here.
GRADIO_VERSION = "6.31.0"


def space_url(space_id: str) -> str:
    return f"https://huggingface.co/spaces/{space_id}"


def _version(distribution: str) -> str:
    """The installed release of a distribution without a local label (`2.13.0+cpu` -> `2.13.0`)."""
    return metadata.version(distribution).split("+", 1)[0]


def requirements_txt() -> str:
    lines = [
        "# rest_hf's run-time libraries, at the versions of the environment that created this Space.",
        "# Gradio comes from sdk_version in README.md.",
    ]
    lines.extend(f"{name}=={_version(name)}" for name in SPACE_REQUIREMENTS)
    return "\n".join(lines) + "\n"


def app_py(model_id: str, revision: str | None) -> str:
    return (
        f'"""A Gradio Space serving {model_id} with rest_hf\'s demo (the rest_hf/ folder beside this file)."""\n'
        "\n"
        "from rest_hf.demo import serve_space\n"
        "\n"
        f"MODEL_ID = {model_id!r}\n"
        f"REVISION = {revision!r}\n"
        "\n"
        'if __name__ == "__main__":\n'
        "    serve_space(MODEL_ID, revision=REVISION)\n"
    )


def readme_md(model_id: str, space_id: str, gradio_version: str) -> str:
    data = SpaceCardData(
        title=space_id.split("/")[-1],
        sdk="gradio",
        sdk_version=gradio_version,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        app_file="app.py",
        license="apache-2.0",
        models=[model_id],
        tags=["rest_hf", "remote-sensing", "semantic-segmentation"],
        emoji="🛰️",
        colorFrom="blue",
        colorTo="green",
        pinned=False,
        short_description="Whole-scene remote-sensing segmentation with REST",
    )
    body = (
        f"# {space_id.split('/')[-1]}\n\n"
        f"Segments a whole remote-sensing scene (GeoTIFF, PNG or JPEG) with [{model_id}]"
        f"(https://huggingface.co/{model_id}), a REST model, and returns the georeferenced label GeoTIFF. "
        "The app is rest_hf's `rest-hf demo`; its code is the `rest_hf/` folder of this Space.\n"
    )
    return str(SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def package_files() -> dict[str, Path]:
    """Path in the Space -> source file for every Python module of the installed rest_hf package."""
    root = Path(__file__).resolve().parents[1]
    return {
        f"rest_hf/{path.relative_to(root).as_posix()}": path
        for path in sorted(root.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def space_contents(model_id: str, space_id: str, *, revision: str | None = None) -> dict[str, bytes | Path]:
    """Path in the Space repository -> bytes (generated) or file (uploaded as it is)."""
    try:
        gradio_version = _version("gradio")
    except metadata.PackageNotFoundError:
        gradio_version = GRADIO_VERSION
    contents: dict[str, bytes | Path] = {
        "README.md": readme_md(model_id, space_id, gradio_version).encode("utf-8"),
        "app.py": app_py(model_id, revision).encode("utf-8"),
        "requirements.txt": requirements_txt().encode("utf-8"),
    }
    contents.update(package_files())
    return contents


def push_space(
    model_id: str,
    space_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
) -> CommitInfo:
    """Create (or update) the Gradio Space `space_id` serving `model_id` (at `revision`), in one commit."""
    from .models import commit

    action = f"create the Space {space_id} for {model_id}"
    require_online(action)
    token = require_token(token, action)
    contents = space_contents(model_id, space_id, revision=revision)
    api = api or HfApi()
    try:
        api.create_repo(
            space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True, token=token
        )
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes one line
        raise explain(error, action=action, repo_id=space_id, repo_type="space") from error
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=src) for name, src in contents.items()
    ]
    return commit(
        api,
        space_id,
        operations,
        repo_type="space",
        revision=None,
        token=token,
        commit_message=commit_message or f"rest_hf demo for {model_id}",
        action=action,
    )
