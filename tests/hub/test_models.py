"""Push and pull of models: the files a push commits, one commit, remote code without rest_hf, offline pulls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from rest_hf import RestConfig, RestForSemanticSegmentation, RestImageProcessor
from rest_hf.hub.card import render_model_card
from rest_hf.hub.errors import HubError
from rest_hf.hub.models import auto_map, prepare_for_hub, pull_model, push_model

from .conftest import REPO_ID
from .helpers import fill_hub_cache, read_json, run_without_rest_hf

EXPECTED_FILES = {
    "README.md",
    "config.json",
    "configuration_rest.py",
    "image_processing_rest.py",
    "model.safetensors",
    "modeling_rest.py",
    "preprocessor_config.json",
}


def _operation_bytes(operation) -> bytes:
    source = operation.path_or_fileobj
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def test_push_makes_one_commit_with_weights_configs_code_and_card(saved_model, api, hub_online):
    info = push_model(saved_model.folder, REPO_ID, token="hf_test", api=api, commit_message="first version")

    assert [call for call, _, _ in api.calls] == ["create_repo", "create_commit"]
    ((repo_args, repo_kwargs),) = api.named("create_repo")
    assert repo_args == (REPO_ID,) and repo_kwargs["exist_ok"] is True and repo_kwargs["private"] is False
    ((commit_args, commit_kwargs),) = api.named("create_commit")
    assert commit_args[0] == REPO_ID
    assert commit_kwargs["commit_message"] == "first version"
    assert commit_kwargs["revision"] is None and commit_kwargs["token"] == "hf_test"
    operations = {op.path_in_repo: op for op in commit_args[1]}
    assert set(operations) == EXPECTED_FILES
    assert info.commit_message == "first version"

    # The weights go up byte for byte; the configs gain an auto_map; the code is the installed model code.
    weights = saved_model.folder / "model.safetensors"
    assert _operation_bytes(operations["model.safetensors"]) == weights.read_bytes()
    config = json.loads(_operation_bytes(operations["config.json"]))
    assert config["auto_map"] == {
        "AutoConfig": "configuration_rest.RestConfig",
        "AutoModelForSemanticSegmentation": "modeling_rest.RestForSemanticSegmentation",
        "AutoImageProcessor": "image_processing_rest.RestImageProcessor",
    }
    assert {k: v for k, v in config.items() if k != "auto_map"} == read_json(
        saved_model.folder / "config.json"
    )
    processor = json.loads(_operation_bytes(operations["preprocessor_config.json"]))
    assert processor["auto_map"] == {"AutoImageProcessor": "image_processing_rest.RestImageProcessor"}
    assert processor["image_mean"] == [100.0, 110.0, 120.0]
    import rest_hf.models.modeling_rest as modeling

    assert _operation_bytes(operations["modeling_rest.py"]) == Path(modeling.__file__).read_bytes()
    card = ModelCard(_operation_bytes(operations["README.md"]).decode())
    assert card.data.pipeline_tag == "image-segmentation"
    assert f'repo = "{REPO_ID}"' in card.text


def test_push_to_a_revision_creates_the_branch_and_commits_there(saved_model, api, hub_online):
    push_model(saved_model.folder, REPO_ID, token="hf_test", api=api, revision="v2", private=True)
    assert [call for call, _, _ in api.calls] == ["create_repo", "create_branch", "create_commit"]
    assert api.named("create_repo")[0][1]["private"] is True
    assert api.named("create_branch")[0][1]["branch"] == "v2"
    assert api.named("create_commit")[0][1]["revision"] == "v2"
    assert api.named("create_commit")[0][1]["commit_message"] == "Upload rest_hf model"


def test_push_keeps_an_existing_model_card(saved_model, api, hub_online, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved_model.folder, folder)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# my card\n")
    (folder / "training_log.txt").write_text("not uploaded")
    push_model(folder, REPO_ID, token="hf_test", api=api)
    operations = {op.path_in_repo: op for op in api.named("create_commit")[0][0][1]}
    assert set(operations) == EXPECTED_FILES
    assert _operation_bytes(operations["README.md"]) == (folder / "README.md").read_bytes()


def test_failed_upload_is_one_commit_that_never_happened(saved_model, api, hub_online):
    response = type("Response", (), {"status_code": 403, "headers": {}, "request": None})()
    api.fail = HfHubHTTPError("403 Forbidden: you cannot write here", response=response)
    with pytest.raises(HubError, match=r"refused the token .*HTTP 403") as error:
        push_model(saved_model.folder, REPO_ID, token="hf_test", api=api)
    assert "\n" not in str(error.value)
    # Everything went into the single create_commit call: the Hub applies a commit whole or not at all.
    assert len(api.named("create_commit")) == 1


def test_push_without_token_says_how_to_log_in(saved_model, api, hub_online, monkeypatch):
    monkeypatch.setattr("rest_hf.hub.errors.get_token", lambda: None)
    with pytest.raises(HubError, match="no Hugging Face token; run `hf auth login` or set HF_TOKEN"):
        push_model(saved_model.folder, REPO_ID, api=api)
    assert api.calls == []


def test_push_in_offline_mode_is_refused(saved_model, api, hub_offline):
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 is set"):
        push_model(saved_model.folder, REPO_ID, token="hf_test", api=api)
    assert api.calls == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "is not a folder"),
        (lambda d: d.mkdir(), r"not a rest_hf model folder \(no config.json\)"),
        (
            lambda d: (d.mkdir(), (d / "config.json").write_text('{"model_type": "upernet"}')),
            "holds a 'upernet'",
        ),
        (
            lambda d: (d.mkdir(), (d / "config.json").write_text('{"model_type": "rest"}')),
            "no safetensors weights",
        ),
        (
            lambda d: (
                d.mkdir(),
                (d / "config.json").write_text('{"model_type": "rest"}'),
                (d / "pytorch_model.bin").write_bytes(b"x"),
            ),
            r"found pytorch_model.bin.*save_pretrained",
        ),
    ],
    ids=["missing", "no-config", "other-model", "no-weights", "bin-weights"],
)
def test_push_refuses_a_folder_that_is_not_a_rest_hf_model(make, message, tmp_path, api, hub_online):
    folder = tmp_path / "model"
    make(folder)
    with pytest.raises(HubError, match=message):
        push_model(folder, REPO_ID, token="hf_test", api=api)
    assert api.calls == []


def test_pull_through_a_prefilled_cache_offline_gives_identical_logits(saved_model, tmp_path, hub_offline):
    cache = tmp_path / "cache"
    hub_folder = prepare_for_hub(saved_model.folder, tmp_path / "hub", model_id=REPO_ID)
    commit = fill_hub_cache(cache, REPO_ID, hub_folder)

    folder = pull_model(REPO_ID, cache_dir=cache)
    assert folder == cache / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / commit
    assert {p.name for p in folder.iterdir()} == EXPECTED_FILES

    model = RestForSemanticSegmentation.from_pretrained(REPO_ID, cache_dir=cache).eval()
    with torch.no_grad():
        logits = model(pixel_values=saved_model.pixel_values).logits
    torch.testing.assert_close(logits, saved_model.logits, rtol=0, atol=0)
    processor = RestImageProcessor.from_pretrained(REPO_ID, cache_dir=cache)
    assert processor.image_mean == [100.0, 110.0, 120.0]


def test_pull_honours_revisions(saved_model, tmp_path, hub_offline):
    cache = tmp_path / "cache"
    main = prepare_for_hub(saved_model.folder, tmp_path / "main", model_id=REPO_ID)
    v2 = prepare_for_hub(saved_model.folder, tmp_path / "v2", model_id=REPO_ID)
    (v2 / "README.md").write_text("# version 2\n")
    main_commit = fill_hub_cache(cache, REPO_ID, main)
    v2_commit = fill_hub_cache(cache, REPO_ID, v2, revision="v2")
    assert pull_model(REPO_ID, cache_dir=cache).name == main_commit
    assert pull_model(REPO_ID, revision="v2", cache_dir=cache).name == v2_commit
    assert (pull_model(REPO_ID, revision="v2", cache_dir=cache) / "README.md").read_text() == "# version 2\n"


def test_pull_offline_of_an_uncached_repo_or_revision_says_so(saved_model, tmp_path, hub_offline):
    cache = tmp_path / "cache"
    fill_hub_cache(cache, REPO_ID, prepare_for_hub(saved_model.folder, tmp_path / "hub"))
    with pytest.raises(HubError, match=r"'org/unknown' is not in the local Hub cache and HF_HUB_OFFLINE=1"):
        pull_model("org/unknown", cache_dir=cache)
    with pytest.raises(HubError, match=r"at revision 'v9' is not in the local Hub cache"):
        pull_model(REPO_ID, revision="v9", cache_dir=cache)
    with pytest.raises(HubError, match="not a valid Hub repository id"):
        pull_model("not/a/valid/id", cache_dir=cache)


def test_pull_refuses_a_repo_that_is_not_a_rest_hf_model(tmp_path, hub_offline):
    cache = tmp_path / "cache"
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "upernet"}')
    fill_hub_cache(cache, "org/upernet", other)
    with pytest.raises(HubError, match="cannot pull org/upernet: .*holds a 'upernet' model"):
        pull_model("org/upernet", cache_dir=cache)


def test_prepared_folder_loads_with_auto_classes_where_rest_hf_is_imported(saved_model, tmp_path):
    folder = prepare_for_hub(saved_model.folder, tmp_path / "hub")
    assert read_json(folder / "config.json")["auto_map"] == auto_map()
    # With rest_hf imported, transformers prefers the registered classes over the shipped code.
    model = AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True).eval()
    assert isinstance(model, RestForSemanticSegmentation)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=saved_model.pixel_values).logits, saved_model.logits)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(processor).__name__ == "RestImageProcessor" and processor.image_std == [50.0, 55.0, 60.0]


def test_prepare_in_place_keeps_the_weights_and_adds_the_rest(saved_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved_model.folder, folder)
    weights = (folder / "model.safetensors").read_bytes()
    prepare_for_hub(folder, folder)
    assert {p.name for p in folder.iterdir()} == EXPECTED_FILES
    assert (folder / "model.safetensors").read_bytes() == weights


def test_a_model_without_preprocessor_config_gets_the_default_one(saved_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved_model.folder, folder)
    (folder / "preprocessor_config.json").unlink()
    hub = prepare_for_hub(folder, tmp_path / "hub")
    processor = read_json(hub / "preprocessor_config.json")
    assert processor["image_mean"] == [123.675, 116.28, 103.53]
    assert processor["auto_map"] == {"AutoImageProcessor": "image_processing_rest.RestImageProcessor"}


@pytest.mark.parametrize("through", ["folder", "cache"])
def test_remote_code_loads_without_rest_hf_and_gives_the_same_logits(saved_model, tmp_path, through):
    hub = prepare_for_hub(saved_model.folder, tmp_path / "hub", model_id=REPO_ID)
    torch.save({"pixel_values": saved_model.pixel_values, "logits": saved_model.logits}, tmp_path / "io.pt")
    env = {}
    source = str(hub)
    if through == "cache":
        fill_hub_cache(tmp_path / "cache", REPO_ID, hub)
        env = {"HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
        source = REPO_ID
    result = run_without_rest_hf(
        f"""
        import torch
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        model = AutoModelForSemanticSegmentation.from_pretrained({source!r}, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained({source!r}, trust_remote_code=True)
        assert "rest_hf" not in sys.modules
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        data = torch.load("io.pt")
        with torch.no_grad():
            logits = model(pixel_values=data["pixel_values"]).logits
        torch.testing.assert_close(logits, data["logits"])
        assert processor.image_mean == [100.0, 110.0, 120.0]
        print("same logits")
        """,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "same logits" in result.stdout


def test_the_isolated_python_cannot_import_rest_hf(tmp_path):
    result = run_without_rest_hf("import rest_hf", cwd=tmp_path)
    assert result.returncode != 0 and "rest_hf is blocked" in result.stderr


def test_push_fills_the_repository_id_into_a_card_rendered_without_one(
    saved_model, api, hub_online, tmp_path
):
    folder = tmp_path / "model"
    shutil.copytree(saved_model.folder, folder)
    render_model_card(RestConfig.from_pretrained(folder)).save(folder / "README.md")  # as the converters do
    push_model(folder, REPO_ID, token="hf_test", api=api)
    operations = {op.path_in_repo: op for op in api.named("create_commit")[0][0][1]}
    text = _operation_bytes(operations["README.md"]).decode()
    assert f'repo = "{REPO_ID}"' in text and f"--model {REPO_ID} --grid 2x2" in text
    assert "path/to/model" not in text
