"""Reads the seed schema document (tests/data/database_schema.md) into plain expectations.

Independent of db/migrations on purpose: the tests compare what this parser reads in the
platform's own document with what PostgreSQL's catalog holds after migrating. Types are
translated to PostgreSQL's ``format_type`` spelling; expressions (defaults, CHECKs, index
predicates) are compared through :func:`normalize_expr`, applied to both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SEED_DOCUMENT = Path(__file__).parents[1] / "data" / "database_schema.md"

_TYPES = {
    r"UUID": "uuid",
    r"VARCHAR\((\d+)\)": "character varying({0})",
    r"DECIMAL\((\d+),\s*(\d+)\)": "numeric({0},{1})",
    r"TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
    r"BOOLEAN": "boolean",
    r"INTEGER": "integer",
    r"BIGINT": "bigint",
    r"TEXT": "text",
    r"JSONB": "jsonb",
    r"DATE": "date",
}
_CLAUSES = {
    "primary_key": re.compile(r"PRIMARY KEY"),
    "unique": re.compile(r"UNIQUE"),
    "not_null": re.compile(r"NOT NULL"),
    "default": re.compile(r"DEFAULT ('[^']*'|\w+\(\)|[\w.+-]+)"),
    "references": re.compile(r"REFERENCES (\w+)\((\w+)\) ON DELETE (CASCADE|SET NULL|SET DEFAULT|RESTRICT|NO ACTION)"),
    "check": re.compile(r"CHECK \((.*)\)$"),
}


@dataclass(frozen=True, slots=True)
class SeedColumn:
    name: str
    type: str
    nullable: bool
    default: str | None
    primary_key: bool
    unique: bool
    references: tuple[str, str, str] | None  # (table, column, ON DELETE action)
    check: str | None


@dataclass(frozen=True, slots=True)
class SeedTable:
    name: str
    columns: tuple[SeedColumn, ...]
    uniques: tuple[tuple[str, ...], ...]  # table-level UNIQUE(...) clauses


@dataclass(frozen=True, slots=True)
class SeedIndex:
    name: str
    table: str
    columns: tuple[str, ...]  # "col" or "col DESC"
    unique: bool
    predicate: str | None


def normalize_expr(text: str) -> str:
    """Compare-ready form of an SQL expression: no casts, parentheses, quotes of identifiers, spaces or case.

    String literals keep their case: ``'USER'::character varying`` and ``'USER'`` both give ``'USER'``.
    """
    parts = re.split(r"('[^']*')", text)
    out = []
    for part in parts:
        if part.startswith("'"):
            out.append(part)
            continue
        part = re.sub(r"::[a-z ]+(\(\d+(,\d+)?\))?", "", part)
        out.append(re.sub(r"[()\s\"]", "", part).lower())
    return "".join(out)


def load_seed(path: Path = SEED_DOCUMENT) -> tuple[dict[str, SeedTable], dict[str, SeedIndex]]:
    """Tables (in document order) and indexes of the seed document."""
    text = path.read_text(encoding="utf-8")
    tables = {}
    for name, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", text, re.S):
        tables[name] = _table(name, body)
    indexes = {}
    pattern = r"CREATE (UNIQUE )?INDEX (\w+) ON (\w+)\(([^)]*)\)\s*(?:WHERE ([^;]+))?;"
    for unique, name, table, columns, predicate in re.findall(pattern, text):
        cols = tuple(" ".join(c.split()) for c in columns.split(","))
        indexes[name] = SeedIndex(name, table, cols, bool(unique), normalize_expr(predicate) if predicate else None)
    return tables, indexes


def _table(name: str, body: str) -> SeedTable:
    columns, uniques = [], []
    for raw in body.splitlines():
        line = raw.split("--", 1)[0].strip().rstrip(",").strip()
        if not line:
            continue
        if line.startswith("UNIQUE("):
            uniques.append(tuple(c.strip() for c in line[len("UNIQUE("):-1].split(",")))
        else:
            columns.append(_column(line))
    return SeedTable(name, tuple(columns), tuple(uniques))


def _column(line: str) -> SeedColumn:
    name, rest = line.split(None, 1)
    for pattern, spelling in _TYPES.items():
        match = re.match(pattern + r"(?=\s|$)", rest)
        if match:
            type_ = spelling.format(*(g.strip() for g in match.groups()))
            rest = rest[match.end():].strip()
            break
    else:
        raise ValueError(f"unknown type in seed column {line!r}")
    found = _clauses(rest, line)
    return SeedColumn(
        name=name,
        type=type_,
        nullable="not_null" not in found and "primary_key" not in found,
        default=normalize_expr(found["default"][0]) if "default" in found else None,
        primary_key="primary_key" in found,
        unique="unique" in found,
        references=found.get("references"),
        check=normalize_expr(found["check"][0]) if "check" in found else None,
    )


def _clauses(rest: str, line: str) -> dict[str, tuple[str, ...]]:
    """Consume the column constraints one by one; any leftover text is a parse error."""
    found: dict[str, tuple[str, ...]] = {}
    while rest:
        for key, pattern in _CLAUSES.items():
            match = pattern.match(rest)
            if match:
                found[key] = match.groups()
                rest = rest[match.end():].strip()
                break
        else:
            raise ValueError(f"cannot parse {rest!r} in seed column {line!r}")
    return found
