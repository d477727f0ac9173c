"""The start-up helpers shared by synesthete-bot and synesthete-web."""

from __future__ import annotations

from engine.startup import BUILD_HINT, MODEL_HINT, load_settings, open_service


def test_bad_setting_is_printed_and_gives_none(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SYNESTHETE_WORKERS", "many")
    assert load_settings("prog", str(tmp_path / "none.env")) is None
    err = capsys.readouterr().err
    assert err.startswith("prog: ") and "SYNESTHETE_WORKERS" in err


def test_missing_index_says_build_first(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SYNESTHETE_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("SYNESTHETE_BACKBONE", "logmel")
    settings = load_settings("prog", str(tmp_path / "none.env"))
    assert settings is not None
    assert open_service("prog", settings) is None
    err = capsys.readouterr().err
    assert BUILD_HINT in err and "detail:" in err and MODEL_HINT not in err
