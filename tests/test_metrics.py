"""ConfusionMatrix: hand-computed examples, evaluate's mean_iou formulas, streaming, masks, output formats."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rest_hf.metrics import ConfusionMatrix, format_table, metrics_to_json


def evaluate_mean_iou(pred: np.ndarray, ref: np.ndarray, num_labels: int, ignore_index: int) -> dict:
    """The formulas of evaluate's `mean_iou` (intersect_and_union / total_intersect_and_union / mean_iou)."""
    mask = ref != ignore_index
    pred, ref = pred[mask], ref[mask]
    intersect = pred[pred == ref]
    area_intersect = np.histogram(intersect, bins=num_labels, range=(0, num_labels - 1))[0]
    area_pred = np.histogram(pred, bins=num_labels, range=(0, num_labels - 1))[0]
    area_label = np.histogram(ref, bins=num_labels, range=(0, num_labels - 1))[0]
    area_union = area_pred + area_label - area_intersect
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = area_intersect / area_union
        acc = area_intersect / area_label
    return {
        "mean_iou": np.nanmean(iou),
        "mean_accuracy": np.nanmean(acc),
        "overall_accuracy": area_intersect.sum() / area_label.sum(),
        "per_category_iou": iou,
        "per_category_accuracy": acc,
    }


def test_hand_computed_example():
    # reference rows, predicted columns
    ref = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0])
    cm = ConfusionMatrix(4)
    cm.update(pred, ref)
    expected = torch.tensor([[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 3, 0], [0, 0, 0, 0]], dtype=torch.int64)
    assert cm.matrix.dtype == torch.int64
    assert torch.equal(cm.matrix, expected)
    m = cm.compute()
    # class 0: TP 2, FN 1, FP 1 -> IoU 2/4, acc 2/3, F1 4/6
    # class 1: TP 1, FN 1, FP 1 -> IoU 1/3, acc 1/2, F1 2/4
    # class 2: TP 3, FN 1, FP 1 -> IoU 3/5, acc 3/4, F1 6/8
    # class 3: absent from both -> NaN
    np.testing.assert_allclose(m["per_category_iou"][:3], [2 / 4, 1 / 3, 3 / 5])
    np.testing.assert_allclose(m["per_category_accuracy"][:3], [2 / 3, 1 / 2, 3 / 4])
    np.testing.assert_allclose(m["per_category_f1"][:3], [4 / 6, 2 / 4, 6 / 8])
    assert np.isnan(m["per_category_iou"][3]) and np.isnan(m["per_category_accuracy"][3])
    assert np.isnan(m["per_category_f1"][3])
    assert m["mean_iou"] == pytest.approx((2 / 4 + 1 / 3 + 3 / 5) / 3)
    assert m["mean_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    assert m["mean_f1"] == pytest.approx((4 / 6 + 2 / 4 + 6 / 8) / 3)
    assert m["overall_accuracy"] == pytest.approx(6 / 9)
    assert m["num_pixels"] == 9
    assert isinstance(m["per_category_iou"], np.ndarray) and m["per_category_iou"].shape == (4,)


def test_class_only_predicted_has_iou_zero_and_accuracy_nan():
    cm = ConfusionMatrix(3).update(np.array([0, 2]), np.array([0, 0]))
    m = cm.compute()
    assert m["per_category_iou"][2] == 0.0  # predicted but never in the reference: a false positive
    # like evaluate: accuracy is undefined without reference pixels
    assert np.isnan(m["per_category_accuracy"][2])
    assert m["per_category_f1"][2] == 0.0
    assert np.isnan(m["per_category_iou"][1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_evaluate_formulas(seed):
    rng = np.random.default_rng(seed)
    k = 6
    ref = rng.integers(0, k, size=(4, 37, 29))
    ref[rng.random(ref.shape) < 0.1] = 255
    ref[ref == 5] = 4  # class 5 absent from the reference
    pred = rng.integers(0, k - 1, size=ref.shape)  # ... and from the prediction
    agree = rng.random(ref.shape) < 0.3
    pred[agree] = np.where(ref == 255, 0, ref)[agree]
    m = ConfusionMatrix(k, ignore_index=255).update(torch.from_numpy(pred), torch.from_numpy(ref)).compute()
    e = evaluate_mean_iou(pred, ref, k, 255)
    for key in ("per_category_iou", "per_category_accuracy"):
        np.testing.assert_allclose(m[key], e[key], equal_nan=True)
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
        assert m[key] == pytest.approx(e[key])
    assert np.isnan(m["per_category_iou"][5])


def test_streaming_equals_one_shot_and_merge():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 5, size=(64, 48))
    ref[:3] = 255
    pred = rng.integers(0, 5, size=(64, 48))
    one = ConfusionMatrix(5).update(pred, ref)
    stream = ConfusionMatrix(5)
    for r in range(0, 64, 16):
        for c in range(0, 48, 24):
            stream.update(pred[r : r + 16, c : c + 24], ref[r : r + 16, c : c + 24])
    assert torch.equal(one.matrix, stream.matrix)
    a = ConfusionMatrix(5).update(pred[:32], ref[:32])
    b = ConfusionMatrix(5).update(pred[32:], ref[32:])
    assert torch.equal(a.merge(b).matrix, one.matrix)
    with pytest.raises(ValueError, match="3-class"):
        a.merge(ConfusionMatrix(3))


def test_ignore_index_and_valid_mask():
    ref = np.array([[0, 1, 255], [1, 1, 0]])
    pred = np.array([[0, 0, 1], [1, 0, 0]])
    valid = np.array([[True, True, True], [True, False, True]])
    cm = ConfusionMatrix(2, ignore_index=255).update(pred, ref, valid_mask=valid)
    # counted: (0,0) (1,0) (1,1) (0,0)
    assert cm.matrix.tolist() == [[2, 0], [1, 1]]
    cm2 = ConfusionMatrix(2, ignore_index=None)
    with pytest.raises(ValueError, match="255"):
        cm2.update(pred, ref)
    # a valid mask given as a torch bool tensor works the same
    cm3 = ConfusionMatrix(2).update(torch.from_numpy(pred), torch.from_numpy(ref), torch.from_numpy(valid))
    assert torch.equal(cm3.matrix, cm.matrix)


def test_bad_inputs():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="same shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="pred contains class id 7"):
        cm.update(np.array([7]), np.array([0]))
    with pytest.raises(ValueError, match="target contains class id 4"):
        cm.update(np.array([0]), np.array([4]))
    with pytest.raises(ValueError, match="valid_mask"):
        cm.update(np.zeros((2, 2), int), np.zeros((2, 2), int), valid_mask=np.ones(3, bool))
    # out-of-range predictions outside the valid mask are fine (e.g. nodata 255 in a label map)
    cm.update(np.array([255, 1]), np.array([0, 1]), valid_mask=np.array([False, True]))
    assert cm.num_pixels == 1


def test_empty_matrix_gives_nan_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = ConfusionMatrix(2).compute()
    assert math.isnan(m["mean_iou"]) and math.isnan(m["overall_accuracy"])


def test_all_reduce_is_noop_without_dist():
    cm = ConfusionMatrix(2).update(np.array([0, 1]), np.array([0, 0]))
    before = cm.matrix.clone()
    cm.all_reduce()
    assert torch.equal(cm.matrix, before)


def test_all_reduce_single_process_gloo(tmp_path):
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cm = ConfusionMatrix(2).update(np.array([0, 1, 1]), np.array([0, 0, 1]))
        before = cm.matrix.clone()
        cm.all_reduce()
        assert torch.equal(cm.matrix, before)
    finally:
        dist.destroy_process_group()


def test_format_table_and_json():
    cm = ConfusionMatrix(3).update(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]))
    id2label = {0: "background", 1: "water", 2: "road"}
    m = cm.compute(id2label)
    assert m["class_names"] == ["background", "water", "road"]
    table = format_table(m, id2label)
    lines = table.splitlines()
    assert "IoU" in lines[0] and "Acc" in lines[0] and "F1" in lines[0]
    water = next(line for line in lines if "water" in line)
    assert "50.00" in water  # IoU of water: TP 1, FP 1 -> 1/2
    road = next(line for line in lines if "road" in line)
    assert road.split()[-3:] == ["-", "-", "-"]
    assert any(line.split()[0] == "mean" for line in lines)

    js = metrics_to_json(m, id2label)
    text = json.dumps(js, allow_nan=False)  # strict JSON: no NaN
    back = json.loads(text)
    assert back["per_class"]["road"]["iou"] is None
    assert back["per_class"]["water"] == {"id": 1, "iou": 0.5, "accuracy": 1.0, "f1": pytest.approx(2 / 3)}
    assert back["per_category_iou"][2] is None
    assert back["mean_iou"] == pytest.approx(m["mean_iou"])
    assert back["confusion_matrix"] == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    # without names: ids as keys; duplicate names stay distinct
    assert set(metrics_to_json(ConfusionMatrix(2).compute())["per_class"]) == {"0", "1"}
    dup = metrics_to_json(cm.compute(), ["a", "a", "b"])
    assert set(dup["per_class"]) == {"a", "a (1)", "b"}
