"""Shared schemas: a tenant migration runs once per tenant, so whatever it does to a shared
schema it does thousands of times. The first tenant changes the shared object, the next
ones fail on it (or change it again); shared objects belong to migrations of their own."""

from __future__ import annotations

from typing import Any

from pglast import ast

from ._common import S, dotted, ident, strings
from ._walker import Family, Walk

family = Family("shared")

SET_SCHEMA_SHARED = family.rule(
    "set-schema-shared",
    "ALTER ... SET SCHEMA into a shared schema (every tenant's object into one place)",
)
SHARED_SCHEMA_DDL = family.rule(
    "shared-schema-ddl",
    "DDL whose target is qualified with a shared schema, in a tenant migration",
)
DATABASE_WIDE = family.rule(
    "database-wide-statement",
    "CREATE EXTENSION, CREATE SCHEMA, roles, event triggers, ALTER SYSTEM or tablespaces in "
    "a tenant migration (they exist once per database)",
)

_DATABASE_WIDE: dict[type, str] = {
    ast.CreateExtensionStmt: "CREATE EXTENSION",
    ast.AlterExtensionStmt: "ALTER EXTENSION",
    ast.CreateSchemaStmt: "CREATE SCHEMA",
    ast.CreateRoleStmt: "CREATE ROLE",
    ast.AlterRoleStmt: "ALTER ROLE",
    ast.DropRoleStmt: "DROP ROLE",
    ast.GrantRoleStmt: "GRANT/REVOKE of a role",
    ast.CreateEventTrigStmt: "CREATE EVENT TRIGGER",
    ast.AlterSystemStmt: "ALTER SYSTEM",
    ast.CreateTableSpaceStmt: "CREATE TABLESPACE",
}
TENANT_ONLY = frozenset({"database-wide-statement", "shared-schema-ddl", "set-schema-shared"})
"""Rules about what a tenant migration must leave to the shared migrations: not applied to
the shared migrations themselves, which are where such statements belong."""


@family.on(*_DATABASE_WIDE)
def _database_wide(w: Walk, node: ast.Node) -> None:
    what = _DATABASE_WIDE[type(node)]
    w.report(
        DATABASE_WIDE,
        f"{what} acts on the whole database, not on this tenant: it runs once per tenant, "
        "so the first tenant's migration does it (an extension or schema made that way "
        "lands in the tenant, first on its search_path) and every later one fails on it "
        "(42710, 42P06) or does it again — put it in a shared migration "
        "(--shared-migrations), which runs once per database before any tenant",
    )


@family.on(ast.AlterObjectSchemaStmt)
def _set_schema(w: Walk, node: ast.AlterObjectSchemaStmt) -> None:
    schema = node.newschema or ""
    if schema not in w.shared:
        return
    w.report(
        SET_SCHEMA_SHARED,
        f"SET SCHEMA {ident(schema)} moves this tenant's object into the shared schema: the "
        "first tenant's move succeeds, every later tenant's fails (42P07, the name is taken) "
        f"and the shared object is one tenant's data — keep tenant objects in {S}; create "
        "shared objects once, outside the tenant migrations",
    )


def _relation(node: Any) -> list[str]:
    if isinstance(node, ast.RangeVar):
        return [node.schemaname or "", node.relname or ""]
    return []


def targets(node: Any) -> list[list[str]]:
    """The qualified names of the objects *node* creates, alters or drops (not those it
    only reads or references)."""
    if isinstance(node, ast.CreateStmt | ast.IndexStmt | ast.CreateTrigStmt):
        return [_relation(node.relation)]
    if isinstance(node, ast.AlterTableStmt | ast.TruncateStmt):
        relations = node.relations if isinstance(node, ast.TruncateStmt) else (node.relation,)
        return [_relation(r) for r in relations or ()]
    if isinstance(node, ast.CreateTableAsStmt):
        return [_relation(node.into.rel)] if node.into is not None else []
    if isinstance(node, ast.ViewStmt):
        return [_relation(node.view)]
    if isinstance(node, ast.CreateSeqStmt | ast.AlterSeqStmt):
        return [_relation(node.sequence)]
    if isinstance(node, ast.CompositeTypeStmt):
        return [_relation(node.typevar)]
    if isinstance(node, ast.CreateEnumStmt | ast.AlterEnumStmt | ast.AlterDomainStmt):
        return [strings(node.typeName)]
    if isinstance(node, ast.CreateDomainStmt):
        return [strings(node.domainname)]
    if isinstance(node, ast.CreateFunctionStmt):
        return [strings(node.funcname)]
    if isinstance(node, ast.CreatePolicyStmt):
        return [_relation(node.table)]
    if isinstance(node, ast.RenameStmt | ast.AlterObjectSchemaStmt):
        if node.relation is not None:
            return [_relation(node.relation)]
        return [_object_name(node.object)]
    if isinstance(node, ast.DropStmt):
        return [_object_name(o) for o in node.objects or ()]
    if isinstance(node, ast.CommentStmt):
        return [_object_name(node.object)]
    return []


_VERBS = {
    "CreateStmt": "CREATE TABLE",
    "IndexStmt": "CREATE INDEX on",
    "CreateTrigStmt": "CREATE TRIGGER on",
    "AlterTableStmt": "ALTER TABLE",
    "TruncateStmt": "TRUNCATE",
    "CreateTableAsStmt": "CREATE TABLE AS",
    "ViewStmt": "CREATE VIEW",
    "CreateSeqStmt": "CREATE SEQUENCE",
    "AlterSeqStmt": "ALTER SEQUENCE",
    "CompositeTypeStmt": "CREATE TYPE",
    "CreateEnumStmt": "CREATE TYPE",
    "AlterEnumStmt": "ALTER TYPE",
    "AlterDomainStmt": "ALTER DOMAIN",
    "CreateDomainStmt": "CREATE DOMAIN",
    "CreateFunctionStmt": "CREATE FUNCTION",
    "CreatePolicyStmt": "CREATE POLICY on",
    "RenameStmt": "RENAME of",
    "AlterObjectSchemaStmt": "SET SCHEMA of",
    "DropStmt": "DROP of",
    "CommentStmt": "COMMENT ON",
}


def _object_name(obj: Any) -> list[str]:
    if isinstance(obj, ast.TypeName):
        return strings(obj.names)
    if isinstance(obj, ast.ObjectWithArgs):
        return strings(obj.objname)
    return strings(obj)


@family.on_every_statement
def _shared_target(w: Walk, node: ast.Node) -> None:
    if not w.shared:
        return
    for parts in targets(node):
        if len(parts) >= 2 and parts[-2] in w.shared:
            w.report(
                SHARED_SCHEMA_DDL,
                f"{_VERBS.get(type(node).__name__, 'this statement on')} "
                f"{dotted(parts[-2:])} changes the shared schema from a tenant migration, "
                "which runs once per tenant: the first tenant changes it, the others fail or "
                "change it again — change shared objects once, outside the tenant "
                "migrations (by hand or from a folder of their own)",
            )
            return
