from pathlib import Path

import pytest

from db.migrate import sqlalchemy_url
from service.cli.settings import Settings, SettingsError


def test_defaults():
    settings = Settings.from_env({})
    assert settings == Settings(database_url=None, data_dir=Path(".fairlane/pgdata"))


def test_database_url_and_data_dir(tmp_path):
    settings = Settings.from_env({"DATABASE_URL": "postgresql://u@h/db", "FAIRLANE_DATA_DIR": str(tmp_path)})
    assert settings.database_url == "postgresql://u@h/db" and settings.data_dir == tmp_path


def test_bad_values_name_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="DATABASE_URL must be a postgresql:// URL, got 'sqlite:///x'"):
        Settings.from_env({"DATABASE_URL": "sqlite:///x"})
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(SettingsError, match="FAIRLANE_DATA_DIR must be a directory"):
        Settings.from_env({"FAIRLANE_DATA_DIR": str(file)})


def test_sqlalchemy_url():
    assert (
        sqlalchemy_url("postgresql://postgres@/fairlane?host=/s") == "postgresql+psycopg://postgres@/fairlane?host=/s"
    )
    with pytest.raises(ValueError, match="must start with postgresql://"):
        sqlalchemy_url("mysql://x")
