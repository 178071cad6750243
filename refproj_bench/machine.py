"""What the results say about the machine, the server and the code they were measured on."""

from __future__ import annotations

import os
import platform
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy

from refproj_bench.config import Json
from refproj_bench.measure import scalar

_SETTINGS = (
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "synchronous_commit",
    "max_parallel_workers_per_gather",
    "jit",
)


def describe(conn: psycopg.Connection[Any], url: sqlalchemy.URL) -> Json:
    """Machine, server version and settings, library versions and git commit."""
    row = conn.execute("SELECT current_setting('server_version'), version()").fetchone()
    assert row is not None
    settings = {name: scalar(conn, "SELECT current_setting(%s)", (name,)) for name in _SETTINGS}
    return {
        "nproc": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "cpu": _cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": row[0],
        "postgresql_version": row[1],
        "postgresql_settings": settings,
        "psycopg": psycopg.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "git_commit": _git_commit(),
        "server": f"{url.username or ''}@{url.host or 'localhost'}:{url.port or 5432}",
        "load_average_start": load_average(),
    }


def load_average() -> list[float]:
    with suppress(OSError, AttributeError):
        return [round(v, 2) for v in os.getloadavg()]
    return []


def _memory_gb() -> float | None:
    with suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _cpu_model() -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    with suppress(OSError, subprocess.SubprocessError):
        here = Path(__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "")
    return None
