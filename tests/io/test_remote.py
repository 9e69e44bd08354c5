"""Remote rasters (issue 12, item 12): URLs are read by HTTP range requests, each process only its own tile.

The scene is a Cloud-Optimized GeoTIFF served by `remote_server.serve` on 127.0.0.1 (no other network); each
process names itself in GDAL_HTTP_USERAGENT, so the server counts the bytes every process read.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from rest_hf.cli import main
from rest_hf.io import RasterSource, gdal_path
from tests.inference.helpers import build_model, processor_for, save_model, synthetic_scene
from tests.multiprocess import run_in_processes

from .remote_server import serve

rasterio = pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def cog(tmp_path_factory):
    """A 256 x 256 px 3-band COG with 64 px tiles, uncompressed (so bytes read measure pixels read)."""
    folder = tmp_path_factory.mktemp("served")
    path = folder / "scene.tif"
    profile = dict(driver="COG", height=256, width=256, count=3, dtype="uint8", blocksize=64, compress="NONE",
                   crs="EPSG:32618", transform=rasterio.transform.from_origin(300000, 4400000, 10, 10))  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(synthetic_scene(256, 256, seed=5))
    return path


def test_urls_map_to_gdal_virtual_paths():
    assert gdal_path("https://h.example/a/b.tif?x=1") == "/vsicurl/https://h.example/a/b.tif?x=1"
    assert gdal_path("http://h/b.tif") == "/vsicurl/http://h/b.tif"
    assert gdal_path("s3://bucket/key/b.tif") == "/vsis3/bucket/key/b.tif"
    assert gdal_path("gs://bucket/b.tif") == "/vsigs/bucket/b.tif"
    assert gdal_path("/vsicurl/https://h/b.tif") == "/vsicurl/https://h/b.tif"
    assert gdal_path("local/b.tif") == "local/b.tif"
    with pytest.raises(ValueError, match=r"unknown scheme ftp://"):
        gdal_path("ftp://h/b.tif")


def _each_process_reads_its_tile(rank, world, url, local):
    from rest_hf.inference import ScenePredictor
    from rest_hf.spatial import SpatialContext

    os.environ["GDAL_HTTP_USERAGENT"] = f"rank{rank}"  # before GDAL's first request in this process
    model = build_model(3, seed=2)
    predictor = ScenePredictor(model, processor_for(3), SpatialContext.init((2, 1)))
    remote = predictor.predict(url)
    if rank == 0:
        trivial = type(model)(model.config).eval()
        trivial.load_state_dict(model.state_dict())
        alone = ScenePredictor(trivial, processor_for(3), SpatialContext.trivial()).predict(local)
        np.testing.assert_array_equal(remote.labels, alone.labels)


def test_two_processes_each_read_only_their_tile_of_a_remote_cog(cog):
    size = cog.stat().st_size
    with serve(cog.parent) as (base, counts):
        run_in_processes(_each_process_reads_its_tile, 2, f"{base}/scene.tif", str(cog))
    read = {agent: counts.bytes[agent] for agent in ("rank0", "rank1")}
    full_resolution = 256 * 256 * 3
    for agent, sent in read.items():
        # its half of the full-resolution tiles (96 kB), the header and GDAL's 16 kB read granularity;
        # never the other half
        assert full_resolution / 2 <= sent <= full_resolution / 2 + 40_000, (
            agent,
            sent,
            counts.requests[agent],
        )
        assert all(r == "HEAD all" or r.startswith("GET bytes=") for r in counts.requests[agent])
        assert sent < 0.55 * size


def test_predict_accepts_a_url_and_names_the_output_after_it(cog, tmp_path, capsys):
    model = save_model(tmp_path / "model", 3)
    with serve(cog.parent) as (base, _):
        assert (
            main(["predict", f"{base}/scene.tif?token=abc", "-o", f"{tmp_path}/out/", "--model", str(model)])
            == 0
        )
        capsys.readouterr()
        code = main(["predict", f"{base}/missing.tif", "-o", str(tmp_path / "x.tif"), "--model", str(model)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "missing.tif" in err[0] and "404" in err[0], err
    with rasterio.open(tmp_path / "out" / "scene.tif") as out, RasterSource(cog) as source:
        assert (out.crs, out.transform, out.shape) == (source.crs, source.transform, (256, 256))
