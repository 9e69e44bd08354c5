"""Push rest_hf models to the Hub and pull them back.

A pushed repository holds the `save_pretrained` folder as it is (safetensors weights, `config.json`,
`preprocessor_config.json`), a model card (`README.md`, generated when the folder has none) and the model code:
`configuration_rest.py`, `modeling_rest.py` and `image_processing_rest.py`, with an `auto_map` in both JSON files.
That is what `register_for_auto_class` + `save_pretrained` write (transformers' `custom_object_save`), so

    AutoModelForSemanticSegmentation.from_pretrained("org/name", trust_remote_code=True)

works on a machine where rest_hf is not installed. The files are built here without loading or re-saving the
weights: they go up byte for byte, in one commit, so a failed push leaves the repository as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, snapshot_download
from transformers.dynamic_module_utils import get_relative_import_files

from ..loading import load_config
from ..models import RestConfig, RestForSemanticSegmentation, RestImageProcessor
from .card import PLACEHOLDER_MODEL_ID, default_image_processor, render_model_card, space_link
from .errors import HubError, explain, require_online, require_token

CONFIG_NAME = "config.json"
PROCESSOR_NAME = "preprocessor_config.json"
CARD_NAME = "README.md"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
# The auto class each rest_hf class registers for, as `register_for_auto_class` would record it.
AUTO_CLASSES: dict[str, type] = {
    "AutoConfig": RestConfig,
    "AutoModelForSemanticSegmentation": RestForSemanticSegmentation,
    "AutoImageProcessor": RestImageProcessor,
}
# What `pull_model` downloads: the files a model repository needs, not e.g. training logs or images.
MODEL_FILE_PATTERNS = ("*.json", "*.safetensors", "*.py", CARD_NAME)


def _class_reference(cls: type) -> str:
    """`module.Class` as transformers writes it into `auto_map` (the module's last dotted component)."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


def auto_map() -> dict[str, str]:
    """The `auto_map` of a pushed rest_hf model, e.g. `{"AutoConfig": "configuration_rest.RestConfig", ...}`."""
    return {auto: _class_reference(cls) for auto, cls in AUTO_CLASSES.items()}


def code_files() -> dict[str, Path]:
    """File name -> source of the model code a Hub repository needs (each class's module and its relative imports)."""
    files: dict[str, Path] = {}
    for cls in AUTO_CLASSES.values():
        module_file = sys.modules[cls.__module__].__file__
        for path in [module_file, *get_relative_import_files(module_file)]:
            files[Path(path).name] = Path(path)
    return files


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors weights of a `save_pretrained` folder (one file, or the shards and their index)."""
    single = model_dir / SAFE_WEIGHTS_NAME
    index = model_dir / SAFE_WEIGHTS_INDEX_NAME
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError) as error:
            raise HubError(f"{index} is not a safetensors index ({error}); save the model again") from None
        missing = [name for name in shards if not (model_dir / name).is_file()]
        if missing:
            raise HubError(f"{model_dir} lacks weight shards listed in {index.name}: {', '.join(missing)}")
        return [index, *(model_dir / name for name in shards)]
    others = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(p.name for p in model_dir.glob("*.pth"))
    found = f" (found {', '.join(others)})" if others else ""
    raise HubError(
        f"{model_dir} has no safetensors weights ({SAFE_WEIGHTS_NAME} or {SAFE_WEIGHTS_INDEX_NAME}){found}; "
        "write the folder with model.save_pretrained(folder)"
    )


def validate_model_dir(model_dir: str | os.PathLike) -> RestConfig:
    """Check that `model_dir` is a rest_hf `save_pretrained` folder with weights; return its config."""
    path = Path(model_dir)
    if not path.is_dir():
        raise HubError(f"{path} is not a folder; pass the folder written by model.save_pretrained(folder)")
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise HubError(
            f"{path} is not a rest_hf model folder (no {CONFIG_NAME}); pass a save_pretrained folder"
        )
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except ValueError as error:
        raise HubError(f"{config_file} is not valid JSON ({error})") from None
    if model_type != "rest":
        raise HubError(f"{path} holds a {model_type!r} model, not a rest_hf model (model_type 'rest')")
    weight_files(path)
    try:
        return load_config(str(path))
    except ValueError as error:
        raise HubError(str(error)) from None


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def hub_contents(
    model_dir: str | os.PathLike, model_id: str | None = None, space_id: str | None = None
) -> dict[str, Path | bytes]:
    """Path in the repository -> file (uploaded as it is) or bytes (generated) for a rest_hf model folder.

    Weights and an existing README.md are taken as they are (a card rendered without a model id gets `model_id` in
    its usage snippets); `config.json` and `preprocessor_config.json` get an `auto_map`; the model code is added; a
    model card is rendered when the folder has none. With `space_id`, the card links to that Space (an existing
    card gets the link after its title, unless it has it already). Other files in the folder (logs, optimizer
    states, images) are left out.
    """
    path = Path(model_dir)
    config = validate_model_dir(path)
    mapping = auto_map()
    contents: dict[str, Path | bytes] = {p.name: p for p in weight_files(path)}

    config_dict = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    config_dict["auto_map"] = {**config_dict.get("auto_map", {}), **mapping}
    contents[CONFIG_NAME] = _json_bytes(config_dict)

    processor_file = path / PROCESSOR_NAME
    if processor_file.is_file():
        processor_dict = json.loads(processor_file.read_text(encoding="utf-8"))
        processor = RestImageProcessor.from_dict(processor_dict)
    else:
        processor = default_image_processor(config)
        processor_dict = processor.to_dict()
    processor_dict["auto_map"] = {"AutoImageProcessor": mapping["AutoImageProcessor"]}
    contents[PROCESSOR_NAME] = _json_bytes(processor_dict)

    for name, source in code_files().items():
        contents[name] = source
    card_file = path / CARD_NAME
    if card_file.is_file():
        text = card_file.read_text(encoding="utf-8")
        # A card rendered before the repository was known (e.g. by the converters) gets the id in its snippets.
        edited = _with_model_id(text, model_id) if model_id else text
        if space_id and f"/spaces/{space_id})" not in edited:
            edited = _with_space_link(edited, space_id)
        contents[CARD_NAME] = edited.encode("utf-8") if edited != text else card_file
    else:
        card = render_model_card(config, model_id=model_id, image_processor=processor, space_id=space_id)
        contents[CARD_NAME] = str(card).encode("utf-8")
    return contents


def _with_model_id(card_text: str, model_id: str) -> str:
    """The card's usage snippets with `model_id` in place of the placeholder."""
    return card_text.replace(f'repo = "{PLACEHOLDER_MODEL_ID}"', f'repo = "{model_id}"').replace(
        f"--model {PLACEHOLDER_MODEL_ID}", f"--model {model_id}"
    )


def _with_space_link(card_text: str, space_id: str) -> str:
    """The card with the Space's paragraph after its first `# ` title (at the end when it has none)."""
    link = space_link(space_id)
    lines = card_text.split("\n")
    for index, line in enumerate(lines):
        if line.startswith("# "):
            return "\n".join([*lines[: index + 1], "", link, *lines[index + 1 :]])
    return card_text.rstrip("\n") + "\n\n" + link + "\n"


def prepare_for_hub(
    model_dir: str | os.PathLike, out_dir: str | os.PathLike, *, model_id: str | None = None
) -> Path:
    """Write into `out_dir` exactly what `push_model` would upload (a folder that loads with remote code).

    `out_dir` may be `model_dir` itself (the folder is made Hub-ready in place). Weights are hard-linked when
    possible, copied otherwise.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, source in hub_contents(model_dir, model_id=model_id).items():
        target = out / name
        if isinstance(source, bytes):
            target.write_bytes(source)
        elif source.resolve() != target.resolve():
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
    return out


def push_model(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
    space_id: str | None = None,
) -> CommitInfo:
    """Upload a rest_hf `save_pretrained` folder to the Hub in one commit.

    Args:
        model_dir: Folder written by `model.save_pretrained` (and `image_processor.save_pretrained`).
        repo_id: `org/name` on the Hub; created (private if asked) when it does not exist.
        private: Create the repository as private (an existing repository keeps its visibility).
        revision: Branch to commit to; created from the default branch when missing.
        token: A write token; defaults to HF_TOKEN or the token saved by `hf auth login`.
        commit_message: Defaults to "Upload rest_hf model".
        api: An `HfApi` to use (tests pass a recording fake).
        space_id: A Space serving the model (`rest_hf.hub.space.push_space`); the model card links to it.

    Returns:
        The `CommitInfo` of the commit. Nothing is committed when any upload fails.
    """
    action = f"push {model_dir} to {repo_id}"
    require_online(action)
    contents = hub_contents(model_dir, model_id=repo_id, space_id=space_id)
    token = require_token(token, action)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=source) for name, source in contents.items()
    ]
    api = api or HfApi()
    target = dict(repo_type="model", revision=revision, token=token, action=action)
    ensure_repo(api, repo_id, private=private, **target)
    return commit(api, repo_id, operations, commit_message=commit_message or "Upload rest_hf model", **target)


def ensure_repo(
    api: HfApi,
    repo_id: str,
    *,
    repo_type: str,
    private: bool,
    revision: str | None,
    token: str,
    action: str,
) -> None:
    """Create the repository (private if asked) and the branch `revision` when they do not exist yet."""
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, token=token)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True, token=token)
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes one line
        raise explain(
            error, action=action, repo_id=repo_id, repo_type=repo_type, revision=revision
        ) from error


def commit(
    api: HfApi,
    repo_id: str,
    operations: Iterable[CommitOperationAdd],
    *,
    repo_type: str,
    revision: str | None,
    token: str,
    commit_message: str,
    action: str,
) -> CommitInfo:
    """One commit of `operations` (the Hub applies it whole or not at all); failures become `HubError`."""
    try:
        return api.create_commit(
            repo_id,
            list(operations),
            commit_message=commit_message,
            repo_type=repo_type,
            revision=revision,
            token=token,
        )
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes one line
        raise explain(
            error, action=action, repo_id=repo_id, repo_type=repo_type, revision=revision
        ) from error


def pull_model(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | None = None,
) -> Path:
    """Download a rest_hf model repository through the Hub cache; return its local snapshot folder.

    Works offline (HF_HUB_OFFLINE=1) when the revision is in the cache. The folder loads with
    `RestForSemanticSegmentation.from_pretrained(folder)`.
    """
    action = f"pull {repo_id}"
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=cache_dir,
                token=token,
                allow_patterns=list(MODEL_FILE_PATTERNS),
                library_name="rest_hf",
            )
        )
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes one line
        raise explain(error, action=action, repo_id=repo_id, revision=revision) from error
    try:
        validate_model_dir(folder)
    except HubError as error:
        raise HubError(f"cannot {action}: {error}") from None
    return folder


__all__ = [
    "AUTO_CLASSES",
    "auto_map",
    "code_files",
    "hub_contents",
    "prepare_for_hub",
    "pull_model",
    "push_model",
    "validate_model_dir",
]
