"""refproj: a PostgreSQL-native projection of per-connection run evidence.

from refproj import Projection
proj = Projection("postgresql://...")
rows = proj.list()
"""

from refproj.errors import (
    AmbiguousConnection,
    ConnectionNotFound,
    DatabaseUnavailable,
    InvalidIdentifier,
    MigrationsNotApplied,
    PoolExhausted,
    RefprojError,
    StatementCanceled,
)
from refproj.projection import Overview, Projection, RefreshResult, Status

__all__ = [
    "AmbiguousConnection",
    "ConnectionNotFound",
    "DatabaseUnavailable",
    "InvalidIdentifier",
    "MigrationsNotApplied",
    "Overview",
    "PoolExhausted",
    "Projection",
    "RefprojError",
    "RefreshResult",
    "StatementCanceled",
    "Status",
]
