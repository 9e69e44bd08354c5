"""REST in transformers' own tools: `pipeline("image-segmentation")` and `Trainer`, neither needing torchvision or timm."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from transformers import Trainer, TrainingArguments, pipeline

from rest_hf import RestImageProcessor, RestImageSegmentationPipeline
from tests.models.tiny import VARIANT_IDS, VARIANTS, tiny_rest

ID2LABEL = {0: "water", 1: "forest", 2: "field", 3: "town"}


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS)
def model_folder(request, tmp_path):
    """A saved model folder with its preprocessor_config.json, as training writes it."""
    name, stages = request.param
    model = tiny_rest(name, stages, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()})
    # Normalised so that random weights still give a few different classes on a uint8 image.
    processor = RestImageProcessor(image_mean=[127.5] * 3, image_std=[64.0] * 3)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    return tmp_path, model.eval(), processor


def expected_labels(model, processor, scene) -> np.ndarray:
    with torch.no_grad():
        logits = model(**processor(scene)).logits
    return logits.argmax(dim=1)[0].numpy()


def check_annotations(annotations, expected: np.ndarray) -> None:
    """One {label, mask, score} per predicted class; the masks tile the scene and mark the model's argmax."""
    assert {a["label"] for a in annotations} == {ID2LABEL[int(k)] for k in np.unique(expected)}
    covered = np.zeros(expected.shape, dtype=int)
    for annotation in annotations:
        assert annotation["score"] is None  # semantic segmentation has no per-mask confidence
        mask = annotation["mask"]
        assert mask.mode == "L" and mask.size == (expected.shape[1], expected.shape[0])
        pixels = np.asarray(mask) == 255
        class_id = {v: k for k, v in ID2LABEL.items()}[annotation["label"]]
        assert np.array_equal(pixels, expected == class_id), annotation["label"]
        covered += pixels
    assert (covered == 1).all()


def test_image_segmentation_pipeline_segments_a_pil_image(model_folder):
    folder, model, processor = model_folder
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    segmenter = pipeline("image-segmentation", model=str(folder))
    assert isinstance(segmenter.image_processor, RestImageProcessor)
    annotations = segmenter(image)
    check_annotations(annotations, expected_labels(model, processor, np.asarray(image)))
    assert "torchvision" not in sys.modules and "timm" not in sys.modules


@pytest.mark.parametrize("layout", ["channels_last", "channels_first", "tensor"])
def test_rest_pipeline_segments_arrays_and_pil_images(model_folder, layout):
    folder, model, processor = model_folder
    scene = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    segmenter = pipeline(
        "image-segmentation", model=str(folder), pipeline_class=RestImageSegmentationPipeline
    )
    given = {
        "channels_last": scene,
        "channels_first": np.moveaxis(scene, -1, 0).copy(),
        "tensor": torch.from_numpy(scene),
    }[layout]
    expected = expected_labels(model, processor, scene)
    check_annotations(segmenter(given), expected)
    check_annotations(segmenter(Image.fromarray(scene)), expected)


def test_rest_pipeline_keeps_every_band_of_a_multispectral_scene(tmp_path):
    model = tiny_rest("convnextv2", [1], num_channels=5, id2label=ID2LABEL)
    processor = RestImageProcessor(image_mean=[0.0] * 5, image_std=[1.0] * 5)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    scene = np.random.default_rng(2).normal(size=(64, 64, 5)).astype(np.float32)
    segmenter = pipeline(
        "image-segmentation", model=str(tmp_path), pipeline_class=RestImageSegmentationPipeline
    )
    check_annotations(segmenter(scene), expected_labels(model.eval(), processor, scene))
    with pytest.raises(ValueError, match="one scene at a time"):
        segmenter(scene[None])


def small_dataset(count: int, size: int = 32) -> Dataset:
    """Scenes whose label is the brightest band, so there is something to learn."""
    generator = np.random.default_rng(3)
    pixels = generator.normal(size=(count, 3, size, size)).astype(np.float32)
    labels = pixels.argmax(axis=1).astype(np.int64)
    labels[:, :4, :4] = 255  # ignored pixels
    return Dataset.from_dict({"pixel_values": list(pixels), "labels": list(labels)}).with_format("torch")


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([sample[key] for sample in samples]) for key in ("pixel_values", "labels")}


# transformers 5.24 names it activation_checkpointing; the old name is what users write today.
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize(("name", "stages"), VARIANTS, ids=VARIANT_IDS)
def test_trainer_trains_with_gradient_checkpointing_and_evaluates(name, stages, tmp_path):
    model = tiny_rest(name, stages)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    arguments = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        gradient_accumulation_steps=2,
        gradient_checkpointing=True,
        learning_rate=1e-3,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=small_dataset(12),
        eval_dataset=small_dataset(4),
        data_collator=collate,
    )
    result = trainer.train()
    assert result.global_step == 3 and np.isfinite(result.training_loss)
    assert all(m.gradient_checkpointing for m in model.modules() if hasattr(m, "gradient_checkpointing"))
    changed = [
        k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert "decode_head.classifier.weight" in changed
    assert all(f"interaction_layers.{s}.attention.in_proj.weight" in changed for s in stages)
    metrics = trainer.evaluate()
    assert np.isfinite(metrics["eval_loss"])
