"""Check that PostgreSQL and Redis answer, and create the database if it is missing.

Runs before Django starts (no project imports), so its message is the first thing a person
sees on a machine where a service is not running.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

HELP = """
Oncepay needs PostgreSQL and Redis.
{problems}
Start them, for example:
  PostgreSQL:  sudo pg_ctlcluster $(ls /etc/postgresql) main start   (or: sudo service postgresql start)
  Redis:       redis-server --daemonize yes
or run the whole stack in containers instead:  docker compose up
Point DATABASE_URL / REDIS_URL elsewhere if your services live on other hosts.
"""


def _drop_stale_test_databases(conn: object, name: str) -> None:
    """Test runs name their database test_<name>_<pid>; drop those whose run is gone."""
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"test_{name}_%",)
    ).fetchall()
    for (datname,) in rows:
        pid = datname.rsplit("_", 1)[-1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            conn.execute(f'DROP DATABASE IF EXISTS "{datname}" WITH (FORCE)')  # type: ignore[attr-defined]


def main() -> int:
    import psycopg
    import redis

    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oncepay")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    problems = []
    url = urlparse(database_url)
    name = url.path.lstrip("/") or "oncepay"
    admin_dsn = url._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin_dsn, connect_timeout=3, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists and "--create-db" in sys.argv:
                conn.execute(f'CREATE DATABASE "{name}"')
                print(f"created database {name}")
            if "--drop-stale-test-dbs" in sys.argv:
                _drop_stale_test_databases(conn, name)
    except psycopg.Error as error:
        problems.append(
            f"  - PostgreSQL is not reachable at {url.hostname}:{url.port or 5432} ({error.__class__.__name__})."
        )
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        problems.append(f"  - Redis is not reachable at {redis_url} ({error.__class__.__name__}).")
    if problems:
        print(HELP.format(problems="\n".join(problems)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
