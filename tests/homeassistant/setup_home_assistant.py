"""Set up a fresh Home Assistant as a household would in its UI, through its own APIs.

Runs with Home Assistant's venv (`.venv-ha`, which has aiohttp): onboarding makes the
owner, then the Wyoming integration is added twice, as Settings > Devices & services >
Add integration > Wyoming does: once for the speech services, once for the Earmark
speaker; between the two the Assist pipeline is pointed at those services.

    python setup_home_assistant.py HTTP_PORT SERVICES_PORT SATELLITE_PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aiohttp


def _say(**record: Any) -> None:
    print(json.dumps(record), flush=True)


async def _up(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(1200):  # 2 minutes: a busy machine starts Home Assistant slowly
        try:
            async with session.get(f"{base}/api/onboarding") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("Home Assistant did not start")


async def _token(session: aiohttp.ClientSession, base: str) -> str:
    client_id = f"{base}/"
    owner = {
        "client_id": client_id,
        "name": "Owner",
        "username": "owner",
        "password": "correct-horse",
        "language": "en",
    }
    async with session.post(f"{base}/api/onboarding/users", json=owner) as response:
        code = (await response.json())["auth_code"]
    grant = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
    async with session.post(f"{base}/auth/token", data=grant) as response:
        return str((await response.json())["access_token"])


async def _add_wyoming(session: aiohttp.ClientSession, base: str, headers: dict[str, str], port: int) -> Any:
    async with session.post(
        f"{base}/api/config/config_entries/flow", json={"handler": "wyoming"}, headers=headers
    ) as r:
        flow = await r.json()
    step = {"host": "127.0.0.1", "port": port}
    async with session.post(
        f"{base}/api/config/config_entries/flow/{flow['flow_id']}", json=step, headers=headers
    ) as r:
        result = await r.json()
    if result.get("type") != "create_entry":
        raise SystemExit(f"adding Wyoming at port {port} failed: {result}")
    _say(event="integration_added", port=port, title=result.get("title"))
    return result


async def _use_services(base: str, token: str) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{base}/api/websocket") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "auth", "access_token": token})
        await ws.receive_json()
        await ws.send_json({"id": 1, "type": "assist_pipeline/pipeline/list"})
        listing = (await ws.receive_json())["result"]
        pipeline = next(p for p in listing["pipelines"] if p["id"] == listing["preferred_pipeline"])
        pipeline_id = pipeline.pop("id")
        pipeline.update(
            stt_engine="stt.vosk_ko", stt_language="ko", tts_engine="tts.espeak_ng", tts_language="ko", tts_voice="ko"
        )
        await ws.send_json({"id": 2, "type": "assist_pipeline/pipeline/update", "pipeline_id": pipeline_id, **pipeline})
        answer = await ws.receive_json()
        if not answer.get("success"):
            raise SystemExit(f"pipeline update failed: {answer}")
        _say(event="pipeline", stt=pipeline["stt_engine"], tts=pipeline["tts_engine"])


async def main(http_port: int, services_port: int, satellite_port: int) -> None:
    base = f"http://127.0.0.1:{http_port}"
    async with aiohttp.ClientSession() as session:
        await _up(session, base)
        token = await _token(session, base)
        headers = {"Authorization": f"Bearer {token}"}
        await _add_wyoming(session, base, headers, services_port)
        await _use_services(base, token)
        await _add_wyoming(session, base, headers, satellite_port)
    _say(event="ready")


if __name__ == "__main__":
    asyncio.run(main(*(int(arg) for arg in sys.argv[1:4])))
