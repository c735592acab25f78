"""The web login's pieces without a browser: signed cookies (HMAC-SHA256, expiry, purpose), the session key kept
in DATA_DIR with 0600, `next` that can never leave the site, and the settings that turn login on (a non-loopback
WEB_HOST only with it; the client secret and WEB_SECRET never shown)."""

from __future__ import annotations

import stat

import pytest

from bot.settings import Settings, SettingsError
from bot.web.auth import Login, local_path, session_key, sign, unsign

KEY = b"k" * 32


def test_a_signed_value_reads_back_until_it_expires():
    token = sign(KEY, "session", {"uid": "7"}, 60, now=1000)
    assert unsign(KEY, "session", token, now=1000)["uid"] == "7"
    assert unsign(KEY, "session", token, now=1059)["exp"] == 1060
    assert unsign(KEY, "session", token, now=1060) is None  # expired
    assert unsign(KEY, "session", token, now=900) is None  # issued in the future: not ours


def test_forged_altered_or_misused_values_are_refused():
    token = sign(KEY, "session", {"uid": "7"}, 60)
    body, mac = token.split(".")
    forged = sign(KEY, "session", {"uid": "8"}, 60).split(".")[0]
    for bad in (f"{forged}.{mac}", f"{body}.{mac[:-2]}AA", body, f"{body}.", "", None, "a.b.c", "x" * 9000,
                sign(b"another key of 32 bytes.........", "session", {"uid": "7"}, 60)):
        assert unsign(KEY, "session", bad) is None, bad
    assert unsign(KEY, "login", token) is None  # a session is never a login state, nor the other way round


def test_next_is_only_ever_a_local_path():
    assert local_path("/archive?text=fox") == "/archive?text=fox"
    for bad in ("https://evil.example/", "//evil.example", "/\\evil.example", "evil", "", None, "/a\r\nSet-Cookie: x",
                "javascript:alert(1)"):
        assert local_path(bad) == "/", bad


def test_the_session_key_is_made_once_private_and_kept(tmp_path):
    first = session_key("", tmp_path / "data")
    path = tmp_path / "data" / "web-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) >= 32
    assert session_key("", tmp_path / "data") == first  # sessions survive a restart
    path.chmod(0o644)
    assert session_key("", tmp_path / "data") == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert session_key("x" * 40, tmp_path / "other") == b"x" * 40 and not (tmp_path / "other").exists()


LOGIN = {"DISCORD_CLIENT_ID": "123456789", "DISCORD_CLIENT_SECRET": "very-secret-value"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_a_public_web_host_needs_login(host):
    with pytest.raises(SettingsError) as refused:
        Settings.load(env={"WEB_HOST": host}, env_file=None)
    assert "DISCORD_CLIENT_ID" in str(refused.value) and "DISCORD_CLIENT_SECRET" in str(refused.value)
    public = {"WEB_PUBLIC_URL": "https://dream.example.org"}
    settings = Settings.load(env={"WEB_HOST": host, **LOGIN, **public}, env_file=None)
    assert settings.web_host == host and settings.login
    if host in ("0.0.0.0", "::"):  # every interface: no address for the redirect URI
        with pytest.raises(SettingsError, match="WEB_PUBLIC_URL"):
            Settings.load(env={"WEB_HOST": host, **LOGIN}, env_file=None)


def test_login_needs_both_id_and_secret_and_hides_the_secret():
    for half in ({"DISCORD_CLIENT_ID": "123"}, {"DISCORD_CLIENT_SECRET": "very-secret-value"}):
        with pytest.raises(SettingsError, match="needs both"):
            Settings.load(env=half, env_file=None)
    with pytest.raises(SettingsError, match="DISCORD_CLIENT_ID"):
        Settings.load(env={**LOGIN, "DISCORD_CLIENT_ID": "my-app"}, env_file=None)
    with pytest.raises(SettingsError) as short:
        Settings.load(env={**LOGIN, "WEB_SECRET": "short-but-secret"}, env_file=None)
    assert "short-but-secret" not in str(short.value) and "(hidden)" in str(short.value)
    settings = Settings.load(env={**LOGIN, "WEB_SECRET": "s" * 40}, env_file=None)
    assert "very-secret-value" not in repr(settings) and "s" * 40 not in repr(settings)
    assert set(settings.secrets) >= {"very-secret-value", "s" * 40}
    assert not Settings.load(env={}, env_file=None).login


def test_the_public_url_and_the_redirect_uri(tmp_path):
    settings = Settings.load(env={**LOGIN, "WEB_PORT": "8090", "DATA_DIR": str(tmp_path)}, env_file=None)
    login = Login.from_settings(settings, frozenset)
    assert login.redirect_uri == "http://127.0.0.1:8090/oauth/callback" and not login.secure
    assert login.oauth_url == "https://discord.com" and login.api_base == "https://discord.com/api/v10"
    assert "very-secret-value" not in repr(login)
    public = Settings.load(env={**LOGIN, "WEB_PUBLIC_URL": "https://dream.example.org/", "DATA_DIR": str(tmp_path)},
                           env_file=None)
    login = Login.from_settings(public, frozenset)
    assert login.redirect_uri == "https://dream.example.org/oauth/callback" and login.secure
    with pytest.raises(SettingsError, match="WEB_PUBLIC_URL"):
        Settings.load(env={"WEB_PUBLIC_URL": "dream.example.org"}, env_file=None)
    assert Login.from_settings(Settings.load(env={}, env_file=None), frozenset) is None
