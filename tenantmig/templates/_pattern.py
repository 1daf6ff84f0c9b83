"""What a pattern is: its parameters, the steps it generates, and the checked access its
builder has to one call's parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import date

from .._exceptions import TemplateError
from ..lint import LintState
from . import _checks


@dataclass(frozen=True)
class Param:
    """One parameter of a pattern."""

    name: str
    help: str
    required: bool = False
    default: str | None = None


@dataclass(frozen=True)
class Step:
    """One migration of a pattern: the ``V`` file's text and, where a safe undo exists, the
    ``U`` file's."""

    suffix: str
    """The end of the file names, after the description's slug."""
    text: str
    ext: str = "sql"
    undo: str | None = None


@dataclass(frozen=True)
class Pattern:
    """A safe multi-step change, as ``tenantmig new --pattern NAME`` writes it."""

    name: str
    summary: str
    """One line: what the pattern does."""
    params: tuple[Param, ...] = field(default=())
    _: KW_ONLY
    build: Callable[[Args], list[Step]]
    """The steps, one migration each, from the checked parameters."""
    reads_folder: bool = False
    """The builder needs what the folder's earlier migrations establish (:attr:`Args.earlier`)."""

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.required)

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if not p.required)

    @property
    def doc(self) -> str:
        """The page of tenantmig's documentation that explains the pattern."""
        return f"docs/patterns/{self.name}.md"

    def describe(self) -> str:
        """The parameters, for ``--list-patterns``."""
        parts = []
        for p in self.params:
            text = p.name if p.required else f"[{p.name}" + (
                f"={p.default}]" if p.default is not None else "]"
            )
            parts.append(text)
        return " ".join(parts)


LOCK = Param("lock_timeout", "lock_timeout of each step that locks the table", default="5s")
KEY = Param("key", "the table's integer key walked in keyset batches", default="id")
BATCH = Param("batch_size", "rows per batch, each committed on its own", default="1000")


class Args:
    """Checked access to one call's parameters, for a pattern's builder."""

    def __init__(
        self,
        pattern: Pattern,
        params: Mapping[str, str],
        *,
        description: str,
        earlier: LintState | None,
        today: date,
    ) -> None:
        known = {p.name: p for p in pattern.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise TemplateError(
                f"pattern {pattern.name} takes no parameter {', '.join(unknown)}; it takes: "
                f"{pattern.describe()}"
            )
        missing = [name for name in pattern.required if not str(params.get(name, "")).strip()]
        if missing:
            raise TemplateError(
                f"pattern {pattern.name} needs {', '.join(missing)} (--param NAME=VALUE or "
                f"--{missing[0].replace('_', '-')}); it takes: {pattern.describe()}"
            )
        self.pattern = pattern
        self.values = {
            name: (str(params[name]) if name in params else (p.default or ""))
            for name, p in known.items()
        }
        self.description = description
        """The user's description, on one line: the first words of every header."""
        self.earlier = earlier
        self.today = today

    def raw(self, name: str) -> str:
        return self.values[name].strip()

    def ident(self, name: str, what: str | None = None) -> str:
        return _checks.ident(self.values[name], what or name.replace("_", " "))

    def optional_ident(self, name: str, what: str) -> str | None:
        return _checks.ident(self.values[name], what) if self.raw(name) else None

    @property
    def lock_timeout(self) -> str:
        return _checks.duration(self.values.get("lock_timeout") or "5s")

    @property
    def lock_directive(self) -> str:
        return f"lock-timeout={self.lock_timeout}"
