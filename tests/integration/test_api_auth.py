"""User tokens (mint/verify against an injected time) and the ``serve`` / ``token`` commands."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import jwt
import pytest

from syncsim.api.auth import AuthError, mint_token, verify_token
from syncsim.cli import main
from syncsim.clock import SystemClock
from syncsim.errors import ConfigError, InvalidInput
from tests.support.api import SECRET

REPO = Path(__file__).resolve().parents[2]
NOW = 1_750_000_000.0


def test_minted_token_verifies_until_it_expires() -> None:
    user = uuid.uuid4()
    token = mint_token(user, SECRET, ttl_s=60, now=NOW)
    assert verify_token(token, SECRET, now=NOW) == user
    assert verify_token(token, SECRET, now=NOW + 59) == user
    with pytest.raises(AuthError, match="expired"):
        verify_token(token, SECRET, now=NOW + 60)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_aud": False})
    assert claims["role"] == claims["aud"] == "authenticated" and claims["sub"] == str(user)


@pytest.mark.parametrize(
    ("claims", "key", "message"),
    [
        ({"role": "authenticated", "exp": NOW + 60}, SECRET, "lacks the 'sub' claim"),
        ({"sub": str(uuid.UUID(int=1)), "role": "authenticated"}, SECRET, "lacks the 'exp' claim"),
        ({"sub": "alice", "role": "authenticated", "exp": NOW + 60}, SECRET, "not a user id"),
        ({"sub": str(uuid.UUID(int=1)), "role": "anon", "exp": NOW + 60}, SECRET, "role must be"),
        ({"sub": str(uuid.UUID(int=1)), "role": "authenticated", "exp": NOW + 60, "aud": "x"}, SECRET, "audience"),
        ({"sub": str(uuid.UUID(int=1)), "role": "authenticated", "exp": NOW + 60, "nbf": NOW + 5}, SECRET, "not valid"),
        ({"sub": str(uuid.UUID(int=1)), "role": "authenticated", "exp": NOW + 60}, "k" * 40, "signature"),
        # NaN compares false with every time, so it never expired (found on a loopback server); nor did Infinity.
        ({"sub": str(uuid.UUID(int=1)), "role": "authenticated", "exp": math.nan}, SECRET, "not a finite number"),
        ({"sub": str(uuid.UUID(int=1)), "role": "authenticated", "exp": math.inf}, SECRET, "not a finite number"),
        ({"sub": str(uuid.UUID(int=1)), "role": "authenticated", "exp": NOW + 9, "nbf": math.nan}, SECRET, "not valid"),
    ],
)
def test_tokens_that_are_not_a_valid_users_are_refused(claims: dict[str, object], key: str, message: str) -> None:
    token = jwt.encode(claims, key, algorithm="HS256")
    with pytest.raises(AuthError, match=message) as info:
        verify_token(token, SECRET, now=NOW)
    assert token not in str(info.value) and "\n" not in str(info.value)


def test_secrets_that_are_missing_or_weak_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SYNCSIM_JWT_SECRET"):
        mint_token(uuid.uuid4(), "", now=NOW)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        verify_token("x.y.z", "short", now=NOW)
    with pytest.raises(InvalidInput, match="UUID"):
        mint_token("bob", SECRET, now=NOW)


def test_token_command_prints_a_token_the_api_accepts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = uuid.uuid4()
    monkeypatch.setenv("SYNCSIM_JWT_SECRET", SECRET)
    assert main(["token", str(user), "--ttl", "120"]) == 0
    token = capsys.readouterr().out.strip()
    issued_at = jwt.decode(token, options={"verify_signature": False})["iat"]
    assert verify_token(token, SECRET, now=issued_at + 119) == user
    with pytest.raises(AuthError, match="expired"):
        verify_token(token, SECRET, now=issued_at + 120)
    monkeypatch.delenv("SYNCSIM_JWT_SECRET")
    assert main(["token", str(user)]) == 2
    error = capsys.readouterr().err
    assert error == "syncsim token: error: no JWT secret: set SYNCSIM_JWT_SECRET (the Supabase project's JWT secret)\n"
    assert main(["token", str(user), "--secret", SECRET]) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_command_runs_the_api_until_stopped(tmp_path: Path) -> None:
    port = _free_port()
    store = f"sqlite:///{tmp_path / 'served.db'}"
    argv = ["serve", "--store", store, "--platform", "hobby", "--strategy", "resumable", "--port", str(port), "--demo"]
    argv += ["--limit-concurrency", "2"]
    env = {**os.environ, "SYNCSIM_JWT_SECRET": SECRET, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "syncsim.cli", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        user = uuid.uuid4()
        headers = {"Authorization": f"Bearer {mint_token(user, SECRET, now=SystemClock().now())}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(200):
                try:
                    health = await client.get("/healthz")
                    break
                except httpx.ConnectError:
                    assert process.poll() is None, process.stdout.read() if process.stdout else ""
                    await asyncio.sleep(0.05)
            assert health.json()["platform"] == "hobby" and health.json()["strategy"] == "resumable"
            submitted = await client.post("/api/sync", json={"type": "noop"}, headers=headers)
            assert submitted.status_code == 202
            # A second, idle connection reaches --limit-concurrency: requests get 503 until it goes.
            _reader, idle = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0.2)
            crowded = await client.get("/healthz")
            idle.close()
            await idle.wait_closed()
            await asyncio.sleep(0.2)
            assert crowded.status_code == 503 and (await client.get("/healthz")).status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (exit by that signal).
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "syncsim API on" in output and "POST /api/sync 202" in output
