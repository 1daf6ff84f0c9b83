"""Domains: a constraint on a domain is checked against every column of every table that uses
it, and a domain's CHECK is hard to change once columns depend on it."""

from __future__ import annotations

from pglast import ast
from pglast.enums import ConstrType

from ._common import WARNING, dotted, strings
from ._walker import Family, Walk

family = Family("domains")

DOMAIN_CONSTRAINT_NOT_VALID = family.rule(
    "domain-constraint-not-valid",
    "ALTER DOMAIN ... ADD CONSTRAINT without NOT VALID, or SET NOT NULL (scans every column "
    "using the domain)",
)
DOMAIN_WITH_CHECK = family.rule(
    "domain-with-check",
    "CREATE DOMAIN with a CHECK constraint (hard to change online later)",
    WARNING,
)


@family.on(ast.AlterDomainStmt)
def _alter_domain(w: Walk, node: ast.AlterDomainStmt) -> None:
    constraint = node.def_
    if node.subtype == "O":  # SET NOT NULL
        not_null = True
    elif node.subtype == "C" and isinstance(constraint, ast.Constraint):
        if constraint.skip_validation:
            return
        not_null = constraint.contype is ConstrType.CONSTR_NOTNULL
    else:
        return
    name = dotted(strings(node.typeName))
    if not_null:
        fix = (
            "a NOT NULL domain constraint has no NOT VALID form: add CHECK (VALUE IS NOT "
            "NULL) NOT VALID instead, then VALIDATE CONSTRAINT in a later migration"
        )
    else:
        fix = (
            "add it NOT VALID (new values are checked at once) and VALIDATE CONSTRAINT in a "
            "later migration"
        )
    w.report(
        DOMAIN_CONSTRAINT_NOT_VALID,
        f"ALTER DOMAIN {name} {'SET NOT NULL' if node.subtype == 'O' else 'ADD CONSTRAINT'} "
        "checks every row of every column that uses the "
        f"domain, holding a lock that blocks writes to those tables for the whole scan — {fix}",
    )


@family.on(ast.CreateDomainStmt)
def _create_domain(w: Walk, node: ast.CreateDomainStmt) -> None:
    checks = [
        c
        for c in node.constraints or ()
        if isinstance(c, ast.Constraint) and c.contype is ConstrType.CONSTR_CHECK
    ]
    if not checks:
        return
    w.report(
        DOMAIN_WITH_CHECK,
        f"CREATE DOMAIN {dotted(strings(node.domainname))} with a CHECK: changing that CHECK "
        "later means a new domain or constraint checked against every column using it, on "
        "every table at once, and columns of a domain type cannot change type without a "
        "rewrite — prefer a plain type and a CHECK constraint on each table (added NOT VALID, "
        "validated later), or accept it if the rule will never change",
    )
