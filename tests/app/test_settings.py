"""Settings: every variable documented in .env.example, bad values stop start-up with one clear line."""

from pathlib import Path

import pytest

from bot.settings import SETTINGS, Settings, SettingsError, env_example

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_variable_with_its_default():
    assert (ROOT / ".env.example").read_text() == env_example()
    for var in SETTINGS.values():
        assert f"\n{var.name}={var.default}\n" in env_example()


def test_defaults_load_without_any_variable():
    settings = Settings.load(env={}, env_file=None)
    assert settings.devices == ("cpu",) and settings.daily_images == 200 and settings.discord_token == ""


@pytest.mark.parametrize("name, value", [
    ("DAILY_IMAGES", "lots"), ("DAILY_IMAGES", "0"), ("PROGRESS_INTERVAL", "-1"),
    ("ADMIN_USER_IDS", "12,abc"), ("DEVICES", " , "), ("LOG_LEVEL", "LOUD"), ("TORCH_THREADS", "0"),
])
def test_a_malformed_value_names_the_variable_in_one_line(name, value):
    with pytest.raises(SettingsError) as caught:
        Settings.load(env={name: value}, env_file=None)
    message = str(caught.value)
    assert message.startswith(f"{name}=") and "\n" not in message


def test_env_file_is_read_and_the_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DAILY_IMAGES=12\nDEVICES=cuda:0,cuda:1\n")
    settings = Settings.load(env={"DAILY_IMAGES": "8"}, env_file=env_file)
    assert settings.daily_images == 8 and settings.devices == ("cuda:0", "cuda:1")


def test_the_token_never_shows_in_errors_or_repr():
    secret = "MTIz.secret-token-value"
    assert secret not in repr(Settings.load(env={"DISCORD_TOKEN": secret}, env_file=None))
