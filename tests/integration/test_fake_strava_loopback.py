"""FakeStrava served by a real uvicorn on 127.0.0.1 (a free port), spoken to over real sockets.

The StravaClient tests run the same scenarios as the in-process unit tests, through httpx's network
transport. The fake and the client share one ManualClock (the fake reads it from the server thread), so
latency, token expiry and rate-limit windows move only when the code under test sleeps.

Third-party faithfulness: stravalib (unchanged) lists an athlete's activities from the loopback FakeStrava.
stravalib hard-codes the scheme (``f"https://{self.server}/..."`` in ``stravalib/protocol.py``) but takes
the host from the ``ApiV3.server`` class attribute (``"www.strava.com"``), which an instance may override,
and accepts a ``requests_session``. So the fake is served over HTTPS with a throw-away self-signed
certificate for 127.0.0.1, ``client.protocol.server`` is set to ``"127.0.0.1:PORT"``, and the session
trusts that certificate: no stravalib code is patched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import random
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncsim.clock import SystemClock
from syncsim.errors import MalformedResponse, RateLimited, StravaNoTimeToRetry, StravaUnavailable, Unauthorized
from syncsim.strava.client import StravaClient
from syncsim.strava.fake import FakeStrava, Faults
from syncsim.strava.fake.server import fake_strava_banner, running_fake_strava
from syncsim.strava.ratelimit import CLOCK_SKEW_S, next_quarter_hour
from syncsim.strava.tokens import MemoryTokenStore
from syncsim.strava.trace import Trace
from tests.support.clocks import ManualClock

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def fake(clock: ManualClock) -> FakeStrava:
    return FakeStrava(clock=clock, seed=11)


@pytest.fixture
def base_url(fake: FakeStrava) -> Iterator[str]:
    with running_fake_strava(fake) as url:
        yield url


def make_client(base_url: str, fake: FakeStrava, store: MemoryTokenStore, clock: Any, **options: Any) -> StravaClient:
    return StravaClient(
        tokens=store,
        clock=clock,
        client_id=fake.client_id,
        client_secret=fake.client_secret,
        base_url=base_url,
        rng=random.Random(0),
        **options,
    )


async def connect(fake: FakeStrava, store: MemoryTokenStore, activities: int) -> tuple[uuid.UUID, int]:
    athlete = fake.add_athlete(activities=activities)
    user_id = uuid.uuid4()
    await store.save_tokens(user_id, athlete.tokens(), now=fake.clock.now())
    return user_id, athlete.athlete_id


async def all_ids(client: StravaClient, user_id: uuid.UUID, **params: Any) -> list[int]:
    ids: list[int] = []
    page = 1
    while activities := await client.list_activities(user_id, page=page, **params):
        ids += [a.id for a in activities]
        page += 1
    return ids


@pytest.mark.parametrize("activities", [0, 1, 199, 200, 201, 5000])
async def test_paging_over_loopback_returns_every_activity_once(
    base_url: str, fake: FakeStrava, clock: ManualClock, activities: int
) -> None:
    store = MemoryTokenStore()
    user_id, athlete_id = await connect(fake, store, activities)
    async with make_client(base_url, fake, store, clock) as client:
        ids = await all_ids(client, user_id)
    assert len(ids) == len(set(ids)) == activities
    assert ids == fake.activity_ids(athlete_id)  # newest first


async def test_short_pages_and_after_order_over_loopback(clock: ManualClock) -> None:
    fake = FakeStrava(clock=clock, seed=4, faults=Faults(short_pages=0.4))
    store = MemoryTokenStore()
    user_id, athlete_id = await connect(fake, store, 900)
    with running_fake_strava(fake) as url:
        async with make_client(url, fake, store, clock) as client:
            oldest_first = await all_ids(client, user_id, after=0)
    assert oldest_first == list(reversed(fake.activity_ids(athlete_id)))
    assert fake.counts["pages"] > 6  # short pages made more than ceil(900 / 200) + 1 requests


async def test_access_token_query_parameter_is_accepted_over_loopback(base_url: str, fake: FakeStrava) -> None:
    athlete = fake.add_athlete(activities=4)
    async with httpx.AsyncClient(base_url=base_url) as http:
        ok = await http.get("/api/v3/athlete/activities", params={"access_token": athlete.access_token})
        bad = await http.get("/api/v3/athlete/activities", params={"access_token": "0" * 40})
    assert ok.status_code == 200 and len(ok.json()) == 4
    assert ok.headers["x-readratelimit-usage"] == "1,1"
    assert bad.status_code == 401
    assert bad.json()["message"] == "Authorization Error"
    assert all(athlete.access_token not in r.path for r in fake.requests)


async def test_token_expiring_mid_paging_over_loopback_is_refreshed_and_saved(clock: ManualClock) -> None:
    fake = FakeStrava(clock=clock, seed=2, latency=1200.0)  # virtual: the server sleeps on the shared clock
    store = MemoryTokenStore()
    user_id, athlete_id = await connect(fake, store, 5000)
    with running_fake_strava(fake) as url:
        async with make_client(url, fake, store, clock) as client:
            ids = await all_ids(client, user_id)
    assert len(set(ids)) == 5000
    saved = await store.get_tokens(user_id)
    assert saved is not None and saved.refresh_token == fake.athlete(athlete_id).refresh_token
    assert fake.counts["refresh_rotations"] >= 1


async def test_revoked_athlete_over_loopback_is_unauthorized_without_token_in_message(
    base_url: str, fake: FakeStrava, clock: ManualClock
) -> None:
    store = MemoryTokenStore()
    user_id, athlete_id = await connect(fake, store, 10)
    tokens = fake.tokens(athlete_id)
    fake.revoke(athlete_id)
    trace = Trace()
    async with make_client(base_url, fake, store, clock, trace=trace) as client:
        with pytest.raises(Unauthorized, match="revoked") as caught:
            await client.list_activities(user_id, page=1)
    for secret in (tokens.access_token, tokens.refresh_token, fake.client_secret):
        assert secret not in str(caught.value)
        assert all(secret not in str(r) for r in trace.records)


async def test_429_over_loopback_waits_for_the_reset_or_raises_rate_limited(
    base_url: str, fake: FakeStrava, clock: ManualClock
) -> None:
    store = MemoryTokenStore()
    user_id, _ = await connect(fake, store, 3)
    fake.spend_rate_limit(100)
    reset = next_quarter_hour(START)
    async with make_client(base_url, fake, store, clock) as client:
        with pytest.raises(RateLimited) as caught:
            await client.list_activities(user_id, page=1, deadline=START + 30)
        assert caught.value.reset_at == reset + CLOCK_SKEW_S
    async with make_client(base_url, fake, store, clock) as client:  # a fresh budget, as a new process
        activities = await client.list_activities(user_id, page=1, deadline=reset + 60)
    assert len(activities) == 3
    assert clock.now() == pytest.approx(reset + 1)


async def test_malformed_page_and_5xx_over_loopback(clock: ManualClock) -> None:
    fake = FakeStrava(clock=clock, faults=Faults(malformed_mode="truncated_json"))
    store = MemoryTokenStore()
    user_id, athlete_id = await connect(fake, store, 300)
    fake.faults.malformed_pages = {(athlete_id, 2)}
    with running_fake_strava(fake) as url:
        async with make_client(url, fake, store, clock, max_retries=2) as client:
            assert len(await client.list_activities(user_id, page=1)) == 200
            with pytest.raises(MalformedResponse, match="page 2: response is not valid JSON"):
                await client.list_activities(user_id, page=2)
            fake.faults.error_rate = 1.0
            with pytest.raises(StravaUnavailable, match="after 3 attempts"):
                await client.list_activities(user_id, page=1)


async def test_a_hanging_fake_over_loopback_times_out_and_is_unavailable() -> None:
    fake = FakeStrava(clock=SystemClock(), faults=Faults(timeout_rate=1.0, hang_s=1.0))
    store = MemoryTokenStore()
    user_id, _ = await connect(fake, store, 1)
    with running_fake_strava(fake) as url:
        async with make_client(url, fake, store, ManualClock(START), timeout_s=0.2, max_retries=1) as client:
            with pytest.raises(StravaUnavailable, match="ReadTimeout after 2 attempts"):
                await client.get_athlete(user_id)


async def test_a_request_to_a_hanging_fake_over_loopback_is_given_up_at_answer_by() -> None:
    """Over a real socket, ``answer_by`` cuts the attempt's timeout (10 s here) to the time left: the client gives up
    then, and says so in one line, rather than wait out the fake's 5 s hang (after which it would answer)."""
    clock = SystemClock()
    fake = FakeStrava(clock=clock, faults=Faults(timeout_rate=1.0, hang_s=5.0))
    store = MemoryTokenStore()
    user_id, _ = await connect(fake, store, 1)
    with running_fake_strava(fake) as url:
        async with make_client(url, fake, store, clock, timeout_s=10.0) as client:
            with pytest.raises(
                StravaNoTimeToRetry, match=r"^GET /athlete: no answer within the 0\.\d s left"
            ) as raised:
                await client.get_athlete(user_id, answer_by=clock.now() + 0.3)
    assert "\n" not in str(raised.value) and fake.counts["timeouts"] == 1


async def test_the_banner_tells_how_to_get_a_token_and_its_refresh_token_works(base_url: str, fake: FakeStrava) -> None:
    athlete = fake.add_athlete(activities=12)
    banner = fake_strava_banner(fake, base_url)
    assert f"athlete {athlete.athlete_id}: 12 activities" in banner
    curl = next(line for line in banner.splitlines() if "curl" in line)
    form = dict(part.split("=", 1) for part in curl.split(" -d ")[1:])
    async with httpx.AsyncClient() as http:
        response = await http.post(curl.split()[4], data=form)
    assert response.status_code == 200
    assert response.json()["access_token"] == athlete.access_token


def test_serve_fake_strava_prints_each_athlete_then_serves() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "from syncsim.strava.fake.server import serve_fake_strava;"
        f"serve_fake_strava(port={port}, athletes=3, seed=5, activities=7)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(12)]
        athletes = [line for line in lines if line.startswith("athlete ")]
        assert len(athletes) == 3 and all("7 activities" in line for line in athletes)
        token = next(line for line in lines if "refresh_token=" in line).split("refresh_token=")[1].split()[0]
        form = {
            "client_id": "fake-client",
            "client_secret": "fake-secret",
            "grant_type": "refresh_token",
            "refresh_token": token,
        }
        response = None
        for _ in range(200):  # the banner comes before uvicorn listens
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/oauth/token", data=form)
                break
            except httpx.ConnectError:
                assert proc.poll() is None, "serve_fake_strava exited"
                threading.Event().wait(0.05)
        assert response is not None and response.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_fake_strava_with_churn_changes_histories_and_posts_webhooks_to_the_app(tmp_path: Path) -> None:
    """``syncsim fake-strava --churn RATE --webhook-url URL``: the served histories change, and each announced
    change arrives as a Strava webhook event naming a real athlete and activity."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from syncsim.api.serve import running_server

    events: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        events.append(await request.json())
        return JSONResponse({"status": "ok"})

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with running_server(receiver) as hook_url:
        argv = ["fake-strava", "--port", str(port), "--athletes", "2", "--activities", "30", "--churn", "7200"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "syncsim.cli", *argv, "--webhook-url", f"{hook_url}/hook"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            for _ in range(400):  # 2 athletes x 2 changes a second: a few events within seconds
                if len(events) >= 4:
                    break
                assert proc.poll() is None, "syncsim fake-strava exited"
                await asyncio.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert len(events) >= 4
    assert {e["object_type"] for e in events} == {"activity"}
    assert {e["aspect_type"] for e in events} <= {"create", "update", "delete"}
    assert all(e["owner_id"] in (10_000_000, 10_000_001) and e["object_id"] > 0 for e in events)


# -- stravalib ----------------------------------------------------------------------------------------------


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    """A throw-away certificate and key for 127.0.0.1 (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)  # certificate validity is wall-clock by nature
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_stravalib_unchanged_lists_every_activity_from_loopback_fake_strava(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = pytest.importorskip("requests")
    stravalib = pytest.importorskip("stravalib")
    monkeypatch.setenv("STRAVA_CLIENT_ID", "12345")  # stravalib wants an integer client id
    monkeypatch.setenv("STRAVA_CLIENT_SECRET", "fake-secret")
    for variable in ("HTTPS_PROXY", "https_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    fake = FakeStrava(clock=SystemClock(), seed=21, client_id="12345", client_secret="fake-secret")
    athlete = fake.add_athlete(activities=450)
    cert, key = self_signed_certificate(tmp_path)
    with running_fake_strava(fake, ssl_certfile=cert, ssl_keyfile=key) as url:
        assert url.startswith("https://127.0.0.1:")
        session = requests.Session()
        session.verify = cert
        client = stravalib.Client(requests_session=session)
        client.protocol.server = url.removeprefix("https://")  # host:port; the scheme stays https
        granted = client.exchange_code_for_token(client_id=12345, client_secret="fake-secret", code=athlete.code)
        client.access_token = granted["access_token"]
        client.refresh_token = granted["refresh_token"]
        client.token_expires = granted["expires_at"]
        me = client.get_athlete()
        activities = list(client.get_activities())
        refreshed = client.refresh_access_token(12345, "fake-secret", client.refresh_token)
        session.close()
    assert me.id == athlete.athlete_id
    assert [a.id for a in activities] == fake.activity_ids(athlete.athlete_id)
    assert activities[0].athlete is not None and activities[0].athlete.id == athlete.athlete_id
    assert refreshed["access_token"] == granted["access_token"]  # more than an hour left: same token
    assert fake.counts["pages"] == 3  # 200 + 200 + 50: stravalib stops at a short page
