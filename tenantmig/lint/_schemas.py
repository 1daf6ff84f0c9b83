"""Names and schemas: a migration runs once per tenant and must touch only that tenant.

Each migration runs with the tenant, then the shared schemas, as its ``search_path``, so an
unqualified name resolves inside the tenant: a warning (qualify it, or let ``--fix`` do it,
to say where it lives); calls of functions the migrations created count as names. A name
qualified with any other schema (another tenant's) is an
error. Which names a statement holds is :mod:`._names`' job (``--fix`` uses it too).
"""

from __future__ import annotations

from pglast import ast

from ._common import WARNING, S, dotted, ident
from ._names import references
from ._walker import Family, Walk

family = Family("schemas")

UNQUALIFIED_NAME = family.rule(
    "unqualified-name",
    "a relation, index, type, sequence or function created, altered, dropped or referenced "
    "without a {{schema}}. (or shared schema) qualifier",
    WARNING,
)
OTHER_TENANT_SCHEMA = family.rule(
    "other-tenant-schema",
    "a name qualified with a schema that is neither {{schema}}, a shared schema nor "
    "pg_catalog/information_schema (e.g. another tenant)",
)


@family.on_every_statement
def _names(w: Walk, node: ast.Node) -> None:
    for ref in references(node, w.state.functions):
        name = ident(ref.name)
        if ref.schema is None:
            hint = f"write {S}.{name}"
            if w.shared:
                hint += f" (or {ident(w.shared[0])}.{name} for a shared object)"
            w.report(
                UNQUALIFIED_NAME,
                f"{ref.kind} {name} is not schema-qualified: it resolves through the "
                f"migration's search_path (the tenant, then the shared schemas), and if the "
                f"tenant has no {name} a shared one is taken — {hint} to say which you mean",
                ref.location,
            )
        elif ref.schema not in w.allowed_schemas:
            what = (
                "another tenant's schema"
                if ref.schema.startswith("tenant_")
                else "a schema that is neither {{schema}} nor a shared schema"
            )
            w.report(
                OTHER_TENANT_SCHEMA,
                f"{ref.kind} {dotted(list(ref.parts))} is in {what}: a migration runs once per "
                f"tenant and must only touch that tenant — write {S}.{name} (declare truly "
                "shared schemas with shared_schemas)",
                ref.location,
            )
