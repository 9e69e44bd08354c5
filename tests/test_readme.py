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
