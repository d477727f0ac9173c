"""One settings object from env and .env."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import Settings, env_key


def test_env_overrides_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SYNESTHETE_TOP_K=7\nSYNESTHETE_DATA_DIR=/srv/x\nDISCORD_TOKEN=abc\nSYNESTHETE_BACKBONE=logmel\n")
    s = Settings.from_env({"SYNESTHETE_TOP_K": "3"}, env_file=env_file)
    assert s.top_k == 3 and s.data_dir == Path("/srv/x") and s.discord_token == "abc" and s.backbone == "logmel"
    assert s.resolved_milvus_uri == "/srv/x/milvus.db"
    assert s.replace(milvus_uri="http://h:19530").resolved_milvus_uri == "http://h:19530"


def test_bad_value_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SYNESTHETE_WORKERS"):
        Settings.from_env({"SYNESTHETE_WORKERS": "many"}, env_file=None)


def test_env_example_documents_every_setting() -> None:
    import dataclasses

    text = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    for f in dataclasses.fields(Settings):
        key = env_key(f.name)
        assert key in text, f"{key} missing from .env.example"
