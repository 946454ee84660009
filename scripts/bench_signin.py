"""Password guessing against a live companion app (reported, never asserted).

    python -m scripts.bench_signin [--guesses 60]

Starts `review_opt_out.app` under uvicorn in its own process on a fresh data directory,
then, all at once from `--guesses` threads:

* (a) wrong passwords for one member's account;
* (b) wrong passwords for as many different accounts (what the per-client limit stops);

and reports how many passwords the server checked (401s) and refused (429s), the
server's resident memory before and its peak after (VmHWM), and the argon2id check time
with the parameters in `review_opt_out.auth`. Writes reports/signin_bench.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2

from review_opt_out import auth
from review_opt_out.registry import Registry
from review_opt_out.signing import create_key
from tests.broker import free_port

SERVER = """
import sys, uvicorn
from pathlib import Path
from review_opt_out.app import create_app
from review_opt_out.registry import Registry
uvicorn.run(create_app(Registry(Path(sys.argv[1]))), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            proxy_headers=False)  # as `earmark review serve` runs it without --trusted-proxy
"""


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def storm(url: str, logins: list[str]) -> Counter[int]:
    start = threading.Barrier(len(logins))

    def guess(login: str) -> int:
        with httpx2.Client(base_url=url, timeout=60) as http:
            start.wait()
            return http.post("/api/login", json={"login": login, "password": "wrong"}).status_code

    with ThreadPoolExecutor(len(logins)) as pool:
        return Counter(pool.map(guess, logins))


def check_time_ms(rounds: int = 20) -> float:
    stored = auth.hash_password("correct horse")
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        auth._verify(stored, "wrong")  # the very check the server runs
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guesses", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("reports/signin_bench.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        create_key(Path(tmp))
        registry = Registry(Path(tmp))
        registry.create_household("h1", "Bench")
        auth.add_member(registry, "h1", "ana@example.org", "Ana", "correct horse")
        registry.close()
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, tmp, str(port)])
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    httpx2.get(f"{url}/", timeout=1)
                    break
                except httpx2.TransportError:
                    if server.poll() is not None:
                        raise SystemExit("the server exited at start") from None
                    time.sleep(0.05)
            before = memory_kib(server.pid, "VmRSS")
            one_account = storm(url, ["ana@example.org"] * args.guesses)
            many_accounts = storm(url, [f"person{n}@example.org" for n in range(args.guesses)])
            peak = memory_kib(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(timeout=10)
    result: dict[str, Any] = {
        "guesses": args.guesses,
        "one_account": {
            "checked": one_account[401],
            "refused": one_account[429],
            "other": sum(one_account.values()) - one_account[401] - one_account[429],
        },
        "many_accounts": {"checked": many_accounts[401], "refused": many_accounts[429]},
        "server_rss_before_mib": round(before / 1024, 1),
        "server_peak_rss_mib": round(peak / 1024, 1),
        "argon2_check_ms_p50": round(check_time_ms(), 1),
        "argon2": {
            "time_cost": auth._HASHER.time_cost,
            "memory_cost_kib": auth._HASHER.memory_cost,
            "parallelism": auth._HASHER.parallelism,
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
