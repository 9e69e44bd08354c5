"""The README's first command: it fetches a real sample, segments its whole test scene with a shipped model and
scores it. Its rest-hf steps run here (in-process, offline from the sample cache) when the cache is present."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from rest_hf.cli import main
from rest_hf.pretrained import list_shipped_models
from rest_hf.samples import list_samples

from .real_cache import real_sample

README = Path(__file__).resolve().parents[2] / "README.md"


def _first_command_steps() -> list[list[str]]:
    block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1)
    first = block.splitlines()[0]
    return [shlex.split(step) for step in first.split("&&")]


def test_readme_first_command_uses_a_shipped_model_on_a_sample_test_scene():
    steps = {step[1]: step for step in _first_command_steps() if step[0].endswith("rest-hf")}
    assert set(steps) == {"samples", "predict", "evaluate"}
    _, _, action, sample, folder = steps["samples"]
    assert action == "fetch" and sample in list_samples()
    predict = steps["predict"]
    model = predict[predict.index("--model") + 1]
    assert model in list_shipped_models() and predict[2].startswith(f"{folder}/test/images/")
    assert "--preview" in predict and steps["evaluate"][
        steps["evaluate"].index("--reference") + 1
    ].startswith(f"{folder}/test/labels/")


def test_readme_first_command_runs(tmp_path, monkeypatch, capsys):
    steps = [s for s in _first_command_steps() if s[0].endswith("rest-hf")]
    real_sample(steps[0][3])  # skips when the real wheels are not cached
    monkeypatch.chdir(tmp_path)
    for step in steps:
        assert main([*step[1:], "--no-progress"] if step[1] != "evaluate" else step[1:]) == 0, step
    printed = capsys.readouterr().out
    assert re.search(r"mean\s+\d+\.\d+", printed)
    assert (tmp_path / "outputs").is_dir() and any((tmp_path / "outputs").glob("*.png"))
