"""`rest-hf evaluate`: streaming metrics of label rasters against references, nodata and ignore_index skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rest_hf.cli import main
from rest_hf.io import LabelWriter

from .helpers import run_cli

pytest.importorskip("rasterio")

NAMES = ["background", "water", "forest"]


def expected_metrics(pred: np.ndarray, ref: np.ndarray, counted: np.ndarray, k: int) -> dict:
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (ref[counted], pred[counted]), 1)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(cm.sum(1) > 0, tp / cm.sum(1), np.nan)
    return {"cm": cm, "iou": iou, "acc": acc, "oa": tp.sum() / cm.sum()}


@pytest.fixture
def pair(tmp_path, make_geotiff):
    """A prediction written like `rest-hf predict` does (nodata 255, class tags) and a reference with 255s."""
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 3, size=(50, 37)).astype(np.uint8)
    pred = np.where(rng.random((50, 37)) < 0.7, ref, rng.integers(0, 3, size=(50, 37))).astype(np.uint8)
    ref[:5] = 255  # unlabelled in the reference: ignore_index
    valid = np.ones(pred.shape, bool)
    valid[:, :4] = False  # nodata in the prediction
    reference = make_geotiff(tmp_path / "ref" / "scene.tif", ref)
    with LabelWriter(tmp_path / "pred" / "scene.tif", reference_like(reference), 3, id2label=NAMES) as writer:
        writer.write(pred, 0, 0, valid_mask=valid)
    counted = valid & (ref != 255)
    return tmp_path / "pred" / "scene.tif", reference, expected_metrics(pred, ref, counted, 3)


def reference_like(path):
    from rest_hf.io import RasterSource

    with RasterSource(path) as source:
        return source.georef


def test_evaluate_prints_a_table_and_writes_the_mean_iou_keys(pair, tmp_path):
    pred, ref, expected = pair
    done = run_cli("evaluate", str(pred), "--reference", str(ref.parent), "--json", str(tmp_path / "m.json"))
    assert done.returncode == 0, done.stderr
    assert "water" in done.stdout and "mean" in done.stdout and "overall acc." in done.stdout
    result = json.loads((tmp_path / "m.json").read_text())
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy", "per_category_iou", "per_category_accuracy"):
        assert key in result
    np.testing.assert_allclose(result["per_category_iou"], expected["iou"])
    np.testing.assert_allclose(result["per_category_accuracy"], expected["acc"])
    assert result["overall_accuracy"] == pytest.approx(expected["oa"])
    assert result["mean_iou"] == pytest.approx(np.nanmean(expected["iou"]))
    assert result["confusion_matrix"] == expected["cm"].tolist()
    assert result["class_names"] == NAMES and result["num_pixels"] == expected["cm"].sum()
    assert result["scenes"][0]["num_pixels"] == expected["cm"].sum()


def test_reading_in_small_blocks_counts_the_same_pixels(pair, tmp_path, capsys):
    pred, ref, expected = pair
    code = main(
        ["evaluate", str(pred), "--reference", str(ref), "--block", "7", "--json", str(tmp_path / "m.json")]
    )
    assert code == 0
    assert json.loads((tmp_path / "m.json").read_text())["confusion_matrix"] == expected["cm"].tolist()


def test_rasters_of_different_sizes_are_refused_in_one_line(pair, tmp_path, make_geotiff, capsys):
    pred, _, _ = pair
    other = make_geotiff(tmp_path / "other.tif", np.zeros((10, 10), np.uint8))
    code = main(["evaluate", str(pred), "--reference", str(other)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is 50 x 37 px but its reference" in err[0]
    code = main(["evaluate", str(pred), str(pred), "--reference", str(other)])
    assert code == 2 and "2 predictions but 1 references" in capsys.readouterr().err
