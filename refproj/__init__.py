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
    ForeignObjectsInSchema,
    InvalidArgument,
    InvalidDatabaseUrl,
    InvalidIdentifier,
    MigrationsNotApplied,
    PermissionDenied,
    PoolExhausted,
    ProjectionClosed,
    ReadOnlyServer,
    RefprojError,
    SourceTablesIncompatible,
    StatementCanceled,
)
from refproj.projection import Projection
from refproj.projection_async import AsyncProjection
from refproj.rows import (
    Detail,
    Freshness,
    FrozenDict,
    FrozenList,
    Health,
    Overview,
    OverviewJson,
    OverviewRow,
    RefreshResult,
    RetainedBytes,
    RunBrief,
    RunDetail,
    Status,
    StreamRetained,
    json_schemas,
    thaw,
)

try:
    __version__ = version("refproj")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AmbiguousConnection",
    "AsyncProjection",
    "ConnectionNotFound",
    "DatabaseError",
    "DatabaseUnavailable",
    "Detail",
    "ForeignObjectsInSchema",
    "Freshness",
    "FrozenDict",
    "FrozenList",
    "Health",
    "InvalidArgument",
    "InvalidDatabaseUrl",
    "InvalidIdentifier",
    "MigrationsNotApplied",
    "Overview",
    "OverviewJson",
    "OverviewRow",
    "PermissionDenied",
    "PoolExhausted",
    "Projection",
    "ProjectionClosed",
    "ReadOnlyServer",
    "RefprojError",
    "RefreshResult",
    "RetainedBytes",
    "RunBrief",
    "RunDetail",
    "SourceTablesIncompatible",
    "StatementCanceled",
    "Status",
    "StreamRetained",
    "__version__",
    "json_schemas",
    "thaw",
]
