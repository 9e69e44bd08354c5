"""The demo page's event handlers (without a browser), `rest-hf demo`'s errors, and a Space's app.py serving its
model from the Hub cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from rest_hf import RestConfig, RestForSemanticSegmentation
from rest_hf.cli import main

from ..conftest import SAMPLE_DIR
from ..hub.helpers import fill_hub_cache
from .browser import free_port, stop
from .helpers import no_progress, request, require_gradio

require_gradio()


@pytest.fixture
def app(tmp_path):
    from rest_hf.demo import ModelCatalog
    from rest_hf.demo.app import DemoApp

    demo = DemoApp(ModelCatalog(allow_hub_ids=False), device="cpu", root=tmp_path / "root")
    yield demo
    demo.close()
    assert not (tmp_path / "root").exists()


def _upload(app, path, tmp_path, session="session1", view=None):
    """Gradio puts an upload in a folder of its own; the app moves it into the session's folder."""
    staged = tmp_path / "gradio-upload" / path.name
    staged.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, staged)
    return app.on_upload(str(staged), "tiny-swin", view, request(session))


def test_a_scene_with_more_bands_than_the_model_needs_shows_the_band_selector(
    app, tmp_path, make_geotiff, rng
):
    scene = make_geotiff(tmp_path / "four.tif", rng.integers(0, 4000, (4, 48, 48), dtype=np.uint16))
    view, bands, status, picture = _upload(app, scene, tmp_path)
    assert (
        bands["visible"] is True
        and bands["choices"] == ["1", "2", "3", "4"]
        and bands["value"] == ["1", "2", "3"]
    )
    assert status == "Scene four.tif: 48 x 48 px, 4 bands, EPSG:32618. Press **Segment**."
    assert picture.startswith(str(app.sessions_dir / "session1"))
    assert not (tmp_path / "gradio-upload").exists()  # moved into the session's folder
    out = app.on_predict(
        "tiny-swin", "windowed", 256, ["4", "3"], False, 0.5, view, request(), progress=no_progress
    )
    assert out[1] == "**Error:** the model needs 3 bands, 2 are selected; select exactly 3"
    out = app.on_predict(
        "tiny-swin", "windowed", 256, ["4", "3", "2"], False, 0.5, view, request(), no_progress
    )
    assert out[1] == "Done: four.tif segmented." and out[8] is None  # no probabilities asked for
    assert app.on_opacity(1.0, out[0], request()).endswith(".png")
    labels = out[0].files[2]
    assert labels.is_file()
    view = _upload(app, SAMPLE_DIR / "RGB.byte.tif", tmp_path, view=out[0])[
        0
    ]  # replaces the old scene's files
    assert not labels.exists() and not (app.sessions_dir / "session1" / "uploads" / "four.tif").exists()
    assert len(list((app.sessions_dir / "session1" / "uploads").rglob("*.tif"))) == 1
    app.end_session(request())
    assert not (app.sessions_dir / "session1").exists()


def test_every_failure_is_one_line_in_the_page(app, tmp_path):
    out = app.on_predict("tiny-swin", "holistic", 2048, [], False, 0.5, None, request(), progress=no_progress)
    assert out[1] == "**Error:** upload a scene or choose a sample first"
    view, bands, status, picture = _upload(app, SAMPLE_DIR / "corrupt.tif", tmp_path)
    assert status.startswith("**Error:** cannot read the pixels of corrupt.tif: ") and "\n" not in status
    assert picture is None and view.scene is None and str(tmp_path) not in status
    empty = _upload(app, SAMPLE_DIR / "all-nodata.tif", tmp_path)[0]
    out = app.on_predict(
        "tiny-swin", "holistic", 2048, [], False, 0.5, empty, request(), progress=no_progress
    )
    assert out[1].startswith("**Error:** ") and "has no valid pixels" in out[1] and "\n" not in out[1]
    assert app.on_model("org/typed", view)[1] == (
        "**Error:** model 'org/typed' is not offered here; choose one of " + ", ".join(app.catalog.names)
    )


def test_the_sample_is_offered_and_segments(app):
    (name,) = app.samples
    view, bands, status, picture = app.on_sample(name, "tiny-swin", None, request())
    assert (
        status.startswith("Scene synthetic_shapes.tif: 256 x 256 px, 3 bands") and bands["visible"] is False
    )
    out = app.on_predict("tiny-swin", "holistic", 2048, [], True, 0.5, view, request(), progress=no_progress)
    assert out[1] == "Done: synthetic_shapes.tif segmented." and out[8].endswith("_probabilities.tif")
    assert (
        app.on_sample("/etc/passwd", "tiny-swin", None, request())[2]
        == "**Error:** no sample called '/etc/passwd'"
    )


def test_demo_command_errors_are_one_line(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rest-hf demo: error: ") and "is not a Hub model id" in err and "\n" not in err
    assert main(["demo", "--port", "0"]) == 2
    assert "--port must be in 1..65535" in capsys.readouterr().err


def test_a_space_app_serves_its_model_from_the_hub_cache(tmp_path):
    """The Space's files, as pushed, start the demo on the pushed model (offline, from a filled Hub cache)."""
    from rest_hf.hub.models import prepare_for_hub
    from rest_hf.hub.space import space_contents

    repo_id = "rest-hf-test/space-model"
    model_dir = tmp_path / "model"
    RestForSemanticSegmentation(RestConfig.from_preset("tiny-swin", num_labels=3)).save_pretrained(model_dir)
    cache = tmp_path / "cache"
    fill_hub_cache(cache, repo_id, prepare_for_hub(model_dir, tmp_path / "hub", model_id=repo_id))
    space = tmp_path / "space"
    for name, source in space_contents(repo_id, "rest-hf-test/demo").items():
        target = space / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source if isinstance(source, bytes) else source.read_bytes())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GRADIO_"))}
    env.update(
        HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), GRADIO_SERVER_PORT=str(port), TMPDIR=str(tmp_path)
    )
    env["PYTHONPATH"] = ""
    log = tmp_path / "space.log"
    process = subprocess.Popen(
        [sys.executable, "app.py"], cwd=space, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    try:
        deadline, config = time.monotonic() + 180, None
        while config is None and time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(
                    f"the Space's app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert config is not None, log.read_text()[-3000:]
        (model,) = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "model"]
        assert [choice[0] for choice in model["props"]["choices"]] == [repo_id]  # its model, no presets
        assert model["props"]["allow_custom_value"] is False  # no typed Hub ids
    finally:
        stop(process)


def test_serve_binds_localhost_never_shares_and_removes_its_files(monkeypatch, tmp_path):
    import gradio as gr

    from rest_hf.demo import ModelCatalog, UploadLimits, serve

    seen = {}

    def launch(page, **kwargs):
        seen.update(kwargs, queue=page._queue.max_size, root=Path(os.environ["GRADIO_TEMP_DIR"]))
        assert seen["root"].is_dir()

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    serve(ModelCatalog(), limits=UploadLimits(max_bytes=1234), max_queue=3)
    assert (seen["server_name"], seen["server_port"], seen["share"]) == ("127.0.0.1", 7860, False)
    assert seen["max_file_size"] == 1234 and seen["queue"] == 3
    assert seen["root"].parent == tmp_path and not seen["root"].exists()
