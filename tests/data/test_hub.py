"""resolve_dataset_root: local folders, Hub ids through the cache, clear errors offline."""

from __future__ import annotations

import pytest

from rest_hf.data import resolve_dataset_root


def test_local_folder_and_index_file(tmp_path):
    assert resolve_dataset_root(str(tmp_path)) == tmp_path
    index = tmp_path / "index.csv"
    index.write_text("image,label\n")
    assert resolve_dataset_root(index) == index


def test_missing_local_path_is_not_mistaken_for_a_hub_id(tmp_path):
    with pytest.raises(ValueError, match="neither an existing folder nor a Hub dataset id"):
        resolve_dataset_root(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="neither an existing folder"):
        resolve_dataset_root("data/a/b")


def _offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_hub_id_offline_and_not_cached_says_what_to_do(tmp_path, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(ValueError, match=r"'org/glh-water'.*not in the local Hub cache.*HF_HUB_OFFLINE=1"):
        resolve_dataset_root("org/glh-water", cache_dir=tmp_path)


def test_hub_id_offline_from_the_cache(tmp_path, monkeypatch):
    _offline(monkeypatch)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "datasets--org--glh-water"
    snapshot = repo / "snapshots" / commit
    (snapshot / "train" / "image").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert resolve_dataset_root("org/glh-water", cache_dir=tmp_path) == snapshot
