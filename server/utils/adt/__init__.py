"""PostgreSQL's src/backend/utils/adt: built-in functions and operators by data type, and the registry.

:mod:`.functions` holds the registry (``fn`` / ``op`` / ``agg`` / ``srf``, resolution) and
the core built-ins; the modules by type (formatting, timestamp, varlena, numeric,
arrayfuncs, jsonfuncs) register theirs into it when imported.  Python imports this
package before any of its modules, so the registry is complete whichever one is asked for.
"""

# Each module by type imports .functions (the registry) first, so the core built-ins are
# registered before theirs whatever the order here.
from pgbundle.server.utils.adt import (  # noqa: F401  (imported to register their built-ins)
    arrayfuncs,
    formatting,
    functions,
    jsonfuncs,
    numeric,
    timestamp,
    varlena,
)
