"""The `nextpick` command line: help on every command, exit code 2 and a clear message for bad arguments."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from nextpick_local.cli import build_parser, main

COMMANDS = [
    "serve",
    "train",
    "retrain",
    "publish",
    "rollback",
    "replay",
    "status",
    "compact-log",
    "export-user",
    "report",
    "migrate-event-log",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])

    assert exit_.value.code == 0
    assert f"usage: nextpick {command}" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([])

    assert exit_.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--port", "http"], "not a port number"),
        (["serve", "--port", "70000"], "port must be 0-65535"),
        (["serve", "--retrain-every", "-5"], "must be >= 0"),
        (["serve", "--parameter-overrides", "Stage"], "expected Name=Value"),
        (["serve", "--hyperparameters", "[1]"], "must be a JSON object"),
        (["serve", "--hyperparameters", "{oops"], "not JSON"),
        (["publish", "missing.tflite", "--manifest", "m.json"], "no such file: missing.tflite"),
        (["rollback"], "required: VERSION"),
        (["replay", "missing.jsonl"], "no such file: missing.jsonl"),
        (["frobnicate"], "invalid choice"),
        (["train", "--step", "fit"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)

    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--step", "train"], "--step train needs --run-id"),
        (["train", "--step", "record"], "--step record needs --run-id"),
        (["train", "--status", "failed"], "--status only applies with --step record"),
    ],
)
def test_a_train_step_without_its_run_exits_2_before_touching_any_stack(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # No local stack runs (the state file does not exist): the usage is checked first.
    assert main([*argv, "--state-file", str(tmp_path / "none.json")]) == 2
    assert message in capsys.readouterr().err


def test_replay_rejects_a_url_that_is_not_http(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")

    with pytest.raises(SystemExit) as exit_:
        main(["replay", str(events), "--api-url", "ftp://host"])

    assert exit_.value.code == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def test_publish_with_a_file_that_is_no_manifest_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, manifest = tmp_path / "model.tflite", tmp_path / "manifest.json"
    model.write_bytes(b"\x00")
    manifest.write_text('{"state_dim": 4}')

    assert main(["publish", str(model), "--manifest", str(manifest)]) == 2
    assert "not a model manifest" in capsys.readouterr().err


def test_stack_name_without_aws_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--stack-name", "prod-stack", "--state-file", str(tmp_path / "none.json")]) == 2
    assert "--stack-name only applies with --aws" in capsys.readouterr().err


def test_aws_without_names_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("MODEL_BUCKET_NAME", "ITEMS_TABLE_NAME", "STATE_TABLE_NAME", "EVENT_BUS_NAME"):
        monkeypatch.delenv(name, raising=False)

    assert main(["status", "--aws"]) == 2
    assert "MODEL_BUCKET_NAME" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["status"], ["compact-log"], ["export-user", "u-1"], ["report"]])
def test_commands_without_a_running_local_stack_say_how_to_start_one(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--state-file", str(tmp_path / "local.json")]) == 1
    assert "nextpick serve --demo" in capsys.readouterr().err


def test_export_user_on_aws_needs_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-user", "u-1", "--aws"]) == 2
    assert "--api-url and --server-key" in capsys.readouterr().err


def test_walkthrough_gets_every_argument_after_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[list[str]] = []
    fake = types.ModuleType("nextpick_local.demo.walkthrough")
    fake.main = lambda argv: received.append(argv) or 0  # type: ignore[attr-defined,func-returns-value]
    monkeypatch.setitem(sys.modules, "nextpick_local.demo.walkthrough", fake)

    assert main(["walkthrough", "--help", "--url", "http://x"]) == 0
    assert received == [["--help", "--url", "http://x"]]


def test_walkthrough_is_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    build_parser().print_help()

    assert "walkthrough" in capsys.readouterr().out


def test_an_unexpected_failure_is_one_line_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXTPICK_DEBUG", raising=False)
    state = tmp_path / "local.json"
    state.write_text("{not json")

    assert main(["status", "--state-file", str(state)]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("nextpick status: unexpected JSONDecodeError: ")
    assert "NEXTPICK_DEBUG=1" in err


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXTPICK_DEBUG", "1")
    state = tmp_path / "local.json"
    state.write_text("{not json")

    with pytest.raises(ValueError):
        main(["status", "--state-file", str(state)])
