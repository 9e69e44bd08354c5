"""Where a dataset lives: a local folder (or index file), or a Hugging Face Hub dataset repository."""

from __future__ import annotations

import os
import re
from pathlib import Path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:
        pass
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def resolve_dataset_root(
    dataset: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_patterns: list[str] | None = None,
) -> Path:
    """The local folder (or index file) of `dataset`.

    Args:
        dataset: A local folder or CSV/Parquet index, or a Hub dataset id such as ``"org/glh-water"``.
        revision: Branch, tag or commit of the Hub repository.
        cache_dir: Hub cache folder (default: the `huggingface_hub` cache, `HF_HUB_CACHE`).
        allow_patterns: Only download files matching these patterns (e.g. one split).

    A Hub id is fetched with `huggingface_hub.snapshot_download` into the cache (once; later calls reuse it).
    With `HF_HUB_OFFLINE=1` only the cache is used.

    Raises:
        ValueError: the folder does not exist, the Hub id is unknown, or the dataset is not cached while offline;
            the message says what to do.
    """
    text = os.fspath(dataset)
    path = Path(text).expanduser()
    if path.exists():
        return path
    if text.startswith((".", "/", "~")) or not _HUB_ID.match(text):
        raise ValueError(
            f"dataset {text!r} is neither an existing folder nor a Hub dataset id (org/name); check the path"
        )
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        raise ValueError(
            f"dataset {text!r} is not a local folder, and huggingface_hub is not installed"
        ) from None
    offline = _offline()
    try:
        folder = snapshot_download(
            text,
            repo_type="dataset",
            revision=revision,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
            allow_patterns=allow_patterns,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError:
        if offline:
            raise ValueError(
                f"Hub dataset {text!r}{f' (revision {revision})' if revision else ''} is not in the local Hub "
                "cache and HF_HUB_OFFLINE=1: download it once online (hf download --repo-type dataset "
                f"{text}) or pass a local folder"
            ) from None
        raise ValueError(
            f"cannot reach the Hub to download dataset {text!r}, and it is not cached; check the connection, or "
            "pass a local folder"
        ) from None
    except RevisionNotFoundError:
        raise ValueError(f"Hub dataset {text!r} has no revision {revision!r}") from None
    except GatedRepoError:
        raise ValueError(
            f"Hub dataset {text!r} is gated: accept its terms on the Hub and log in (hf auth login)"
        ) from None
    except RepositoryNotFoundError:
        raise ValueError(
            f"no dataset {text!r} on the Hub (or it is private: log in with `hf auth login`); for a local folder, "
            "check the path"
        ) from None
    return Path(folder)


__all__ = ["resolve_dataset_root"]
