"""Throwaway PostgreSQL databases for the tests, on the server `scripts/dev_postgres.sh` starts.

Each test gets a database of its own (CREATE DATABASE from template0: ~0.2 s), dropped
afterwards. `EARMARK_TEST_POSTGRES` names the server and a role allowed to create
databases; the default is what `scripts/bootstrap.sh dev` sets up.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

ADMIN_URL = os.environ.get("EARMARK_TEST_POSTGRES", "postgresql://earmark_test:earmark_test@127.0.0.1:5432/postgres")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped (connections and all) when the block ends."""
    name = f"earmark_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as err:
        raise RuntimeError(
            f"no PostgreSQL for the tests at {ADMIN_URL.split('@')[-1]} ({err}); "
            "run `bash scripts/bootstrap.sh dev` (it installs and starts one) or set EARMARK_TEST_POSTGRES"
        ) from err
    with admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
        try:
            yield _with_database(ADMIN_URL, name)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
