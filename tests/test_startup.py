"""The one start-up of the four console scripts: settings, exit codes, one line per problem."""

from __future__ import annotations

import os
import argparse
import subprocess
import sys

import pytest

from bot import main as bot_main
from engine import cli as engine_cli
from engine.errors import EmptyIndexError, NotAudioError, StoreError
from engine.settings import Settings
from engine.startup import (
    BUILD_HINT,
    EXIT_INTERNAL,
    EXIT_USER_ERROR,
    MODEL_HINT,
    add_common_args,
    open_service,
    run_console,
)
from index_builder import cli as index_cli
from web import main as web_main

SCRIPTS = {
    "synesthete": (engine_cli.main, ["about"]),
    "synesthete-index": (index_cli.main, ["build", "--audio", "nowhere"]),
    "synesthete-bot": (bot_main.main, []),
    "synesthete-web": (web_main.main, []),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("key, value, says", [
    ("SYNESTHETE_WORKERS", "abc", "must be a whole number"),
    ("SYNESTHETE_WORKERS", "0", "must be at least 1"),
    ("SYNESTHETE_BACKBONE", "vgg", "use one of musicnn, openl3, logmel"),
    ("SYNESTHETE_SIMILARITY_METHOD", "pca", "use one of pooled, lda, off"),
    ("SYNESTHETE_WEB_TRUST_FORWARDED", "maybe", "must be true or false"),
    ("SYNESTHETE_IDENTIFY_THRESHOLD", "1.5", "must be between 0 and 0.999"),
    ("SYNESTHETE_ENGINE_URL", "engine:8080", "use http://host:port"),
])
def test_a_bad_setting_is_one_line_and_exit_2_in_every_script(tmp_path, monkeypatch, capsys, script, key, value,
                                                               says) -> None:
    monkeypatch.setenv(key, value)
    monkeypatch.setenv("SYNESTHETE_DATA_DIR", str(tmp_path))
    main, argv = SCRIPTS[script]
    assert main(["--env-file", os.devnull, *argv]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{script}: setting {key}=") and value in err and says in err


def test_the_env_file_is_read_and_the_environment_wins(tmp_path, monkeypatch) -> None:
    env = tmp_path / "x.env"
    env.write_text("SYNESTHETE_TOP_K=7\nSYNESTHETE_WORKERS=abc\n")
    monkeypatch.setenv("SYNESTHETE_WORKERS", "3")
    seen: list[Settings] = []
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    rc = run_console("prog", parser, lambda a, s: seen.append(s), ["--env-file", str(env)])
    assert rc == 0 and seen[0].top_k == 7 and seen[0].workers == 3


@pytest.mark.parametrize("exc, code", [(NotAudioError("x"), EXIT_USER_ERROR), (StoreError("x"), EXIT_INTERNAL),
                                       (RuntimeError("boom"), EXIT_INTERNAL)])
def test_errors_end_in_one_sentence_and_their_exit_code(tmp_path, capsys, exc, code) -> None:
    def body(args, settings):
        raise exc

    parser = argparse.ArgumentParser()
    assert run_console("prog", parser, body, []) == code
    err = capsys.readouterr().err
    assert err.startswith("prog: ") and "Traceback" not in err


def test_a_flag_that_breaks_a_setting_is_refused_like_the_environment(capsys) -> None:
    assert web_main.main(["--port", "70000", "--env-file", os.devnull]) == EXIT_USER_ERROR
    assert "SYNESTHETE_WEB_PORT=70000" in capsys.readouterr().err


def test_settings_made_in_code_are_validated_too() -> None:
    with pytest.raises(ValueError, match="SYNESTHETE_BOT_WATCH_MODE"):
        Settings(bot_watch_mode="everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SYNESTHETE_TOP_K"):
        Settings().replace(top_k=0)


def test_the_installed_command_prints_no_traceback(tmp_path) -> None:
    """The issue's own reproduction: ``SYNESTHETE_WORKERS=abc synesthete about``."""
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "about"], capture_output=True, text=True, timeout=120,
                          env={"SYNESTHETE_WORKERS": "abc", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                          cwd=tmp_path)
    assert proc.returncode == EXIT_USER_ERROR
    assert "Traceback" not in proc.stderr and "SYNESTHETE_WORKERS='abc'" in proc.stderr


def test_missing_index_says_build_first(tmp_path, capsys) -> None:
    """Issue 30: never built is exit 2 with "build it first: ..." for every command (it was 1, "try again later")."""
    settings = Settings(data_dir=tmp_path / "empty", backbone="logmel")
    with pytest.raises(EmptyIndexError):
        open_service("prog", settings)
    env = tmp_path / "env"
    env.write_text(f"SYNESTHETE_DATA_DIR={tmp_path / 'empty'}\nSYNESTHETE_BACKBONE=logmel\n")
    for script, argv in (("synesthete", ["about"]), ("synesthete", ["serve", "--port", "1"]),
                         ("synesthete-web", ["--port", "1"])):
        main = engine_cli.main if script == "synesthete" else web_main.main
        code = main(["--env-file", str(env), *argv])
        err = capsys.readouterr().err
        assert code == EXIT_USER_ERROR, (script, argv, err)
        assert BUILD_HINT in err and "isn't available" not in err and MODEL_HINT not in err


def test_an_index_held_by_another_process_is_exit_2_naming_the_holder(tmp_path, capsys) -> None:
    import json

    from engine.errors import StoreLockedError
    from engine.startup import holder_of

    (tmp_path / "engine.json").write_text(json.dumps({"url": "http://127.0.0.1:8080", "pid": os.getpid()}))
    assert holder_of(tmp_path) == f"an engine serving http://127.0.0.1:8080 (pid {os.getpid()})"

    def body(args, settings):
        raise StoreLockedError("milvus-lite allows one process")

    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir")
    rc = run_console("prog", parser, body, [], overrides=lambda a: {"data_dir": tmp_path})
    err = capsys.readouterr().err
    assert rc == EXIT_USER_ERROR and f"held by an engine serving http://127.0.0.1:8080 (pid {os.getpid()})" in err
    (tmp_path / "engine.json").unlink()
    (tmp_path / "build.lock").write_text(f"{os.getpid()}\n")
    assert holder_of(tmp_path) == f"an index build (pid {os.getpid()})"
    (tmp_path / "build.lock").write_text("999999999\n")  # a stale lock file names nobody
    assert holder_of(tmp_path) == "another process (an engine, the bot or a build)"


def test_the_bot_asks_the_engine_named_by_engine_url(tmp_path, monkeypatch) -> None:
    """SYNESTHETE_ENGINE_URL makes the bot a client of that engine; no index is opened here."""
    import bot.client
    from engine.client import EngineClient

    made = {}

    def fake_bot(settings, service):  # the network edge: no Discord login here
        made["service"] = service

    monkeypatch.setattr(bot.client, "create_bot", fake_bot)
    monkeypatch.setattr(bot_main.asyncio, "run", lambda coro: coro.close())
    monkeypatch.setenv("DISCORD_TOKEN", "x" * 59)
    monkeypatch.setenv("SYNESTHETE_ENGINE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SYNESTHETE_DATA_DIR", str(tmp_path))
    assert bot_main.main(["--env-file", os.devnull]) == 0
    assert isinstance(made["service"], EngineClient) and made["service"].url == "http://127.0.0.1:9"
    assert not (tmp_path / "milvus.db").exists()


@pytest.mark.parametrize("key", ["SYNESTHETE_SPEED_TOLERANCE_PCT", "SYNESTHETE_DECODE_TIMEOUT_S",
                                 "SYNESTHETE_IDENTIFY_THRESHOLD"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused(key, value) -> None:
    with pytest.raises(ValueError, match=f"{key}=.*(finite|must be)"):
        Settings.from_env({key: value}, env_file=None)


def test_a_missing_env_file_named_on_the_command_line_is_refused(tmp_path, capsys) -> None:
    assert engine_cli.main(["--env-file", str(tmp_path / "typo.env"), "about"]) == EXIT_USER_ERROR
    assert "typo.env: no such file" in capsys.readouterr().err


def test_an_unreadable_env_file_is_named(tmp_path, capsys) -> None:
    bad = tmp_path / "latin1.env"
    bad.write_bytes(b"SYNESTHETE_TOP_K=\xff\xfe7\n")
    assert engine_cli.main(["--env-file", str(bad), "about"]) == EXIT_USER_ERROR
    assert "latin1.env" in capsys.readouterr().err


def test_a_path_the_user_gave_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SYNESTHETE_DATA_DIR", "/proc/1/nope")
    audio = tmp_path / "audio"
    audio.mkdir()
    rc = index_cli.main(["--env-file", os.devnull, "build", "--audio", str(audio)])
    err = capsys.readouterr().err
    assert rc == EXIT_USER_ERROR and "Traceback" not in err and err.count("\n") <= 2
