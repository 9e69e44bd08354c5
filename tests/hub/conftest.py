"""Fixtures for the Hub tests: a tiny saved model, offline/online switches, a recording HfApi, a scene folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from huggingface_hub import CommitInfo, constants

from rest_hf import RestConfig, RestForSemanticSegmentation, RestImageProcessor

from .helpers import write_raster

REPO_ID = "rest-hf-test/tiny-swin"


@dataclass
class SavedModel:
    folder: Path
    pixel_values: torch.Tensor
    logits: torch.Tensor


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory) -> SavedModel:
    """A tiny 3-class Swin REST model written by save_pretrained, with an input and its logits."""
    torch.manual_seed(0)
    config = RestConfig.from_preset(
        "tiny-swin",
        num_labels=3,
        id2label={0: "background", 1: "water", 2: "building"},
        label2id={"background": 0, "water": 1, "building": 2},
        palette=[[0, 0, 0], [0, 0, 255], [255, 0, 0]],
    )
    model = RestForSemanticSegmentation(config).eval()
    folder = tmp_path_factory.mktemp("saved") / "model"
    model.save_pretrained(folder)
    RestImageProcessor(image_mean=[100.0, 110.0, 120.0], image_std=[50.0, 55.0, 60.0]).save_pretrained(folder)
    pixel_values = torch.randn(1, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
    return SavedModel(folder, pixel_values, logits)


@pytest.fixture
def hub_offline(monkeypatch):
    """HF_HUB_OFFLINE=1 for this process (huggingface_hub reads the variable once, at import)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def hub_online(monkeypatch):
    """Offline mode off (CI sets HF_HUB_OFFLINE=1), for code paths that refuse to run offline."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@dataclass
class RecordingApi:
    """Stands in for `HfApi`: records every call; `fail` makes create_commit raise it (after recording)."""

    calls: list[tuple[str, tuple, dict[str, Any]]] = field(default_factory=list)
    fail: Exception | None = None

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))

    def create_branch(self, *args, **kwargs):
        self.calls.append(("create_branch", args, kwargs))

    def create_commit(self, *args, **kwargs):
        self.calls.append(("create_commit", args, kwargs))
        if self.fail is not None:
            raise self.fail
        repo_id = args[0]
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{'0' * 40}",
            commit_message=kwargs["commit_message"],
            commit_description="",
            oid="0" * 40,
        )

    def named(self, name: str) -> list[tuple[tuple, dict[str, Any]]]:
        return [(args, kwargs) for call, args, kwargs in self.calls if call == name]


@pytest.fixture
def api() -> RecordingApi:
    return RecordingApi()


@pytest.fixture
def water_root(tmp_path) -> Path:
    """A GLH-Water-style folder: train (2 scenes), val (1 scene); masks 0/255 as PNG; one sidecar file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "glh"
    for split, names, size in (("train", ["a", "b"], (40, 48)), ("val", ["c"], (32, 32))):
        for name in names:
            write_raster(
                root / split / "image" / f"{name}.tif", rng.integers(0, 255, (3, *size), dtype=np.uint8)
            )
            mask = (rng.random(size) > 0.5).astype(np.uint8) * 255
            write_raster(root / split / "label" / f"{name}.png", mask, driver="PNG", georeferenced=False)
    (root / "train" / "image" / "a.tif.aux.xml").write_text("<PAMDataset/>")
    return root
