"""`rest-hf push` and `rest-hf pull`: output, and one-line errors with a non-zero exit."""

from __future__ import annotations

import socket

import pytest
from huggingface_hub import constants

from rest_hf.cli import main
from rest_hf.hub.models import prepare_for_hub

from .conftest import REPO_ID
from .helpers import fill_hub_cache


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rest-hf {command}: error: ") and "\n" not in err, err
    return err


def test_push_command_commits_through_hfapi(saved_model, api, hub_online, monkeypatch, capsys):
    monkeypatch.setattr("rest_hf.hub.models.HfApi", lambda: api)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    code = main(
        ["push", str(saved_model.folder), REPO_ID, "--private", "--revision", "dev", "--message", "m"]
    )
    assert code == 0
    assert (
        f"pushed {saved_model.folder} to https://huggingface.co/{REPO_ID}/commit/" in capsys.readouterr().out
    )
    ((args, kwargs),) = api.named("create_commit")
    assert kwargs["commit_message"] == "m" and kwargs["revision"] == "dev"
    assert api.named("create_repo")[0][1]["private"] is True


def test_push_command_without_token_fails_in_one_line(saved_model, api, hub_online, monkeypatch, capsys):
    monkeypatch.setattr("rest_hf.hub.models.HfApi", lambda: api)
    monkeypatch.setattr("rest_hf.hub.errors.get_token", lambda: None)
    assert main(["push", str(saved_model.folder), REPO_ID]) == 2
    assert "no Hugging Face token" in _one_line_error(capsys, "push")
    assert api.calls == []


def test_push_command_refuses_a_folder_that_is_not_a_model(tmp_path, hub_online, capsys):
    assert main(["push", str(tmp_path), REPO_ID]) == 2
    assert "not a rest_hf model folder" in _one_line_error(capsys, "push")


def test_pull_command_prints_the_cached_folder(saved_model, tmp_path, hub_offline, capsys):
    cache = tmp_path / "cache"
    commit = fill_hub_cache(cache, REPO_ID, prepare_for_hub(saved_model.folder, tmp_path / "hub"))
    assert main(["pull", REPO_ID, "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"snapshots/{commit}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["org/missing"], "is not in the local Hub cache and HF_HUB_OFFLINE=1"),
        ([REPO_ID, "--revision", "v9"], "at revision 'v9' is not in the local Hub cache"),
    ],
)
def test_pull_command_errors_are_one_line(saved_model, tmp_path, hub_offline, capsys, argv, message):
    cache = tmp_path / "cache"
    fill_hub_cache(cache, REPO_ID, prepare_for_hub(saved_model.folder, tmp_path / "hub"))
    assert main(["pull", *argv, "--cache-dir", str(cache)]) == 2
    assert message in _one_line_error(capsys, "pull")


@pytest.fixture
def unreachable_hub(monkeypatch, hub_online):
    """HF_ENDPOINT on a local port where nothing listens: every request is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")


def test_commands_say_when_the_hub_cannot_be_reached(
    saved_model, tmp_path, unreachable_hub, monkeypatch, capsys
):
    assert main(["pull", "org/model", "--cache-dir", str(tmp_path / "cache")]) == 2
    error = _one_line_error(capsys, "pull")
    assert "the Hub cannot be reached and model 'org/model' is not in the local cache" in error
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert main(["push", str(saved_model.folder), REPO_ID]) == 2
    assert "the Hub cannot be reached (ConnectError" in _one_line_error(capsys, "push")
