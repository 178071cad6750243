"""refproj: a PostgreSQL-native projection of per-connection run evidence.

from refproj import Projection
proj = Projection("postgresql://...")
rows = proj.list()
"""

from importlib.metadata import PackageNotFoundError, version

from refproj.errors import (
    AmbiguousConnection,
    ConnectionNotFound,
    DatabaseError,
    DatabaseUnavailable,
    InvalidArgument,
    InvalidDatabaseUrl,
    InvalidIdentifier,
    MigrationsNotApplied,
    PermissionDenied,
    PoolExhausted,
    RefprojError,
    StatementCanceled,
)
from refproj.projection import Overview, Projection, RefreshResult, Status

try:
    __version__ = version("refproj")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AmbiguousConnection",
    "ConnectionNotFound",
    "DatabaseError",
    "DatabaseUnavailable",
    "InvalidArgument",
    "InvalidDatabaseUrl",
    "InvalidIdentifier",
    "MigrationsNotApplied",
    "Overview",
    "PermissionDenied",
    "PoolExhausted",
    "Projection",
    "RefprojError",
    "RefreshResult",
    "StatementCanceled",
    "Status",
    "__version__",
]
