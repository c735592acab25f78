"""The local Discord's login with Discord (OAuth2 authorization code grant), driven over HTTP as a browser and
a web app would: the consent page, the redirect with code and state, the strict token endpoint, and
/users/@me and /users/@me/guilds with a Bearer token, whose answers match the spec's response schemas."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bot.localdiscord import LocalDiscord
from bot.localdiscord.models import MANAGE_GUILD

CALLBACK = "http://127.0.0.1:9/oauth/callback"


@pytest.fixture
async def discord():
    async with LocalDiscord(check_responses=True) as d:
        d.oauth.allow_redirect(CALLBACK)
        yield d
        assert d.spec_errors == [] and d.response_errors == []


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def form(d, user=None, decision="authorize", **changes):
    fields = {"response_type": "code", "client_id": d.oauth.client_id, "redirect_uri": CALLBACK,
              "scope": "identify guilds", "state": "s1", "decision": decision, **changes}
    if user is not None:
        fields["user"] = str(user.id)
    return fields


async def authorize(d, http, user, **changes) -> dict[str, list[str]]:
    async with http.post(f"{d.base_url}/oauth2/authorize", data=form(d, user, **changes),
                         allow_redirects=False) as answer:
        assert answer.status == 302, await answer.text()
        location = answer.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return parse_qs(urlsplit(location).query)


async def exchange(d, http, code, *, basic=False, **changes):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, **changes}
    headers = {}
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{d.oauth.client_id}:{d.oauth.client_secret}".encode()).decode()
    else:
        data.setdefault("client_id", d.oauth.client_id)
        data.setdefault("client_secret", d.oauth.client_secret)
    async with http.post(f"{d.api_base}/oauth2/token", data=data, headers=headers) as answer:
        return answer.status, await answer.json()


async def test_the_consent_page_lists_users_and_authorize_redirects_with_code_and_state(discord, http):
    alice = discord.add_user("alice")
    async with http.get(discord.oauth.authorize_url(CALLBACK, "s1")) as answer:
        assert answer.status == 200 and answer.content_type == "text/html"
        page = await answer.text()
    assert 'id="user-alice"' in page and "Authorize" in page and "Know what servers you" in page
    query = await authorize(discord, http, alice)
    assert query["state"] == ["s1"] and len(query["code"][0]) > 20

    cancelled = await authorize(discord, http, alice, decision="deny")
    assert cancelled["error"] == ["access_denied"] and cancelled["state"] == ["s1"] and "code" not in cancelled


async def test_the_exchange_gives_a_bearer_token_for_the_users_own_data(discord, http):
    alice = discord.add_user("alice")
    boss = discord.add_user("boss", manage_guild=True)
    elsewhere = discord.add_outside_guild("Elsewhere", [alice], managers=[boss])
    status, token = await exchange(discord, http, (await authorize(discord, http, alice))["code"][0])
    assert status == 200
    assert token["token_type"] == "Bearer" and token["scope"] == "guilds identify" and token["expires_in"] > 0
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    async with http.get(f"{discord.api_base}/users/@me", headers=bearer) as answer:
        me = await answer.json()
    assert answer.status == 200 and me["id"] == str(alice.id) and me["username"] == "alice" and "email" not in me
    async with http.get(f"{discord.api_base}/users/@me/guilds", headers=bearer) as answer:
        guilds = await answer.json()
    assert [g["id"] for g in guilds] == [str(discord.guild_id), str(elsewhere)]
    assert all(isinstance(g["permissions"], str) and g["owner"] is False for g in guilds)
    assert not int(guilds[0]["permissions"]) & MANAGE_GUILD

    status, token = await exchange(discord, http, (await authorize(discord, http, boss))["code"][0], basic=True)
    assert status == 200  # HTTP Basic client auth
    async with http.get(f"{discord.api_base}/users/@me/guilds",
                        headers={"Authorization": f"Bearer {token['access_token']}"}) as answer:
        guilds = {g["id"]: g for g in await answer.json()}
    assert int(guilds[str(discord.guild_id)]["permissions"]) & MANAGE_GUILD
    assert int(guilds[str(elsewhere)]["permissions"]) & MANAGE_GUILD


async def test_codes_are_single_use_short_lived_and_bound_to_their_redirect(discord, http):
    alice = discord.add_user("alice")
    code = (await authorize(discord, http, alice))["code"][0]
    assert (await exchange(discord, http, code))[0] == 200
    assert await exchange(discord, http, code) == (400, {"error": "invalid_grant",
                                                        "error_description": 'Invalid "code" in request.'})
    code = (await authorize(discord, http, alice))["code"][0]
    assert await exchange(discord, http, code, redirect_uri="http://127.0.0.1:9/elsewhere") == (
        400, {"error": "invalid_grant", "error_description": 'Invalid "redirect_uri" in request.'})
    assert (await exchange(discord, http, code))[0] == 400  # a failed exchange used it up too
    discord.oauth.code_ttl = 0.05
    code = (await authorize(discord, http, alice))["code"][0]
    await asyncio.sleep(0.1)
    assert (await exchange(discord, http, code))[1]["error"] == "invalid_grant"
    assert (await exchange(discord, http, "not-a-code"))[1]["error"] == "invalid_grant"
    assert await exchange(discord, http, "") == (400, {"error": "invalid_request",
                                                      "error_description": 'Missing "code" in request.'})
    assert await exchange(discord, http, "x", grant_type="password") == (400, {"error": "unsupported_grant_type"})


async def test_client_auth_is_strict(discord, http):
    alice = discord.add_user("alice")
    code = (await authorize(discord, http, alice))["code"][0]
    assert await exchange(discord, http, code, client_secret="wrong") == (401, {"error": "invalid_client"})
    assert await exchange(discord, http, code, client_id="1", client_secret=discord.oauth.client_secret) == (
        401, {"error": "invalid_client"})
    async with http.post(f"{discord.api_base}/oauth2/token", json={"grant_type": "authorization_code"}) as answer:
        assert answer.status == 400 and (await answer.json())["error"] == "invalid_request"  # form-encoded only
    assert discord.oauth.client_secret not in str(discord.oauth.exchanges)


async def test_bad_links_show_an_error_page_and_never_redirect(discord, http):
    alice = discord.add_user("alice")
    for changes in ({"client_id": "1"}, {"redirect_uri": "https://evil.example/cb"}):
        async with http.post(f"{discord.base_url}/oauth2/authorize", data=form(discord, alice, **changes),
                             allow_redirects=False) as answer:
            assert answer.status == 400 and "Location" not in answer.headers
    async with http.get(discord.oauth.authorize_url("https://evil.example/cb", "s"), allow_redirects=False) as answer:
        assert answer.status == 400 and "redirect_uri" in await answer.text()
    query = await authorize(discord, http, alice, scope="identify bot.everything")
    assert query["error"] == ["invalid_scope"]


async def test_bearer_tokens_need_their_scope_and_open_no_bot_route(discord, http):
    alice = discord.add_user("alice")
    code = (await authorize(discord, http, alice, scope="identify"))["code"][0]
    _, token = await exchange(discord, http, code)
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    async with http.get(f"{discord.api_base}/users/@me", headers=bearer) as answer:
        assert answer.status == 200
    async with http.get(f"{discord.api_base}/users/@me/guilds", headers=bearer) as answer:
        assert answer.status == 401  # needs the guilds scope
    async with http.get(f"{discord.api_base}/channels/{discord.channel_id}/messages", headers=bearer) as answer:
        assert answer.status == 401  # a bot route
    async with http.get(f"{discord.api_base}/users/@me", headers={"Authorization": "Bearer forged"}) as answer:
        assert answer.status == 401
