"""The README's single-process Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_and_segments_the_whole_scene():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = next(block for block in blocks if "post_process_semantic_segmentation" in block)
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    assert tuple(namespace["outputs"].logits.shape) == (1, 24, 300, 400)
    assert tuple(namespace["labels"].shape) == (300, 400)


def test_readme_transformers_example_runs_the_pipeline_and_checkpointing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example saves a model folder in the working directory
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    first = next(block for block in blocks if "post_process_semantic_segmentation" in block)
    example = next(block for block in blocks if 'pipeline("image-segmentation"' in block)
    namespace: dict = {}
    exec(compile(first, str(README), "exec"), namespace)
    exec(compile(example, str(README), "exec"), namespace)
    assert all(mask["mask"].size == (400, 300) for mask in namespace["masks"])
    assert len(namespace["outputs"].hidden_states) == 5 and namespace["outputs"].interaction_attentions
    assert namespace["model"].training and (tmp_path / "tiny-rest" / "preprocessor_config.json").is_file()
