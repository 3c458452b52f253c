"""The migrated catalog equals the seed schema document: tables, columns, constraints, indexes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from db.connect import connect
from tests.db.seed_schema import SeedTable, load_seed, normalize_expr

ON_DELETE = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT", "r": "RESTRICT", "a": "NO ACTION"}

COLUMNS_SQL = """
SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable, pg_get_expr(d.adbin, d.adrelid) AS default
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

CONSTRAINTS_SQL = """
SELECT c.conrelid::regclass::text AS table, c.contype::text AS kind,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.i) AS columns,
       c.confrelid::regclass::text AS ref_table,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.i) AS ref_columns,
       c.confdeltype::text AS on_delete, pg_get_expr(c.conbin, c.conrelid) AS check_expr
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE n.nspname = 'public' AND c.contype IN ('p', 'u', 'f', 'c')
"""

# indexes that are not the implementation of a PRIMARY KEY / UNIQUE constraint
INDEXES_SQL = """
SELECT i.relname AS name, t.relname AS table, x.indisunique AS unique,
       ARRAY(SELECT pg_get_indexdef(x.indexrelid, k + 1, true)
                    || CASE WHEN x.indoption[k] & 1 = 1 THEN ' DESC' ELSE '' END
             FROM generate_subscripts(x.indkey, 1) k ORDER BY k) AS columns,
       pg_get_expr(x.indpred, x.indrelid) AS predicate
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = 'public'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.conrelid = x.indrelid)
"""


@pytest.fixture(scope="module")
def seed() -> tuple[dict[str, SeedTable], dict[str, Any]]:
    return load_seed()


@pytest.fixture(scope="module")
def catalog(pg_template_dsn: str) -> dict[str, list[dict[str, Any]]]:
    """The catalog of a freshly migrated database (the session template: read once, then closed)."""

    async def read() -> dict[str, list[dict[str, Any]]]:
        conn = await connect(pg_template_dsn)
        try:
            queries = {"columns": COLUMNS_SQL, "constraints": CONSTRAINTS_SQL, "indexes": INDEXES_SQL}
            result = {key: [dict(r) for r in await conn.fetch(sql)] for key, sql in queries.items()}
            result["info_columns"] = [dict(r) for r in await conn.fetch(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'")]
            result["tables"] = [dict(r) for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
            return result
        finally:
            await conn.close()

    return asyncio.run(read())


def test_seed_document_counts(seed):
    tables, indexes = seed
    assert len(tables) == 18
    assert sum(len(t.columns) for t in tables.values()) == 249
    assert len(indexes) == 13


def test_public_holds_exactly_the_seed_tables(seed, catalog):
    tables, _ = seed
    assert sorted(r["table_name"] for r in catalog["tables"]) == sorted(tables)
    assert len(catalog["info_columns"]) == 249


def test_columns_types_defaults_and_nullability(seed, catalog):
    tables, _ = seed
    for name, table in tables.items():
        actual = [r for r in catalog["columns"] if r["table"] == name]
        expected = [(c.name, c.type, c.nullable, c.default) for c in table.columns]
        got = [(r["column"], r["type"], r["nullable"], normalize_expr(r["default"]) if r["default"] else None)
               for r in actual]
        assert got == expected, name


def test_primary_keys(seed, catalog):
    tables, _ = seed
    expected = {(t.name, tuple(c.name for c in t.columns if c.primary_key)) for t in tables.values()}
    assert _constraints(catalog, "p") == expected


def test_unique_constraints(seed, catalog):
    tables, _ = seed
    expected = {(t.name, (c.name,)) for t in tables.values() for c in t.columns if c.unique}
    expected |= {(t.name, cols) for t in tables.values() for cols in t.uniques}
    assert _constraints(catalog, "u") == expected


def test_foreign_keys_with_on_delete(seed, catalog):
    tables, _ = seed
    expected = {(t.name, c.name, *c.references) for t in tables.values() for c in t.columns if c.references}
    actual = {
        (r["table"], r["columns"][0], r["ref_table"], r["ref_columns"][0], ON_DELETE[r["on_delete"]])
        for r in catalog["constraints"] if r["kind"] == "f"
    }
    assert all(len(r["columns"]) == 1 for r in catalog["constraints"] if r["kind"] == "f")
    assert actual == expected
    assert len(expected) == 24


def test_check_constraints(seed, catalog):
    tables, _ = seed
    expected = {(t.name, c.check) for t in tables.values() for c in t.columns if c.check}
    actual = {(r["table"], normalize_expr(r["check_expr"])) for r in catalog["constraints"] if r["kind"] == "c"}
    assert actual == expected
    assert len(expected) == 2


def test_indexes_with_order_and_predicates(seed, catalog):
    _, indexes = seed
    actual = {
        r["name"]: (r["table"], tuple(c.replace('"', "") for c in r["columns"]), r["unique"],
                    normalize_expr(r["predicate"]) if r["predicate"] else None)
        for r in catalog["indexes"] if not r["name"].startswith("engine_")
    }
    expected = {i.name: (i.table, i.columns, i.unique, i.predicate) for i in indexes.values()}
    assert actual == expected
    # the engine's own indexes on platform tables (named engine_*, db/migrations/0140_model_usage.sql, 0160_*)
    assert {r["name"] for r in catalog["indexes"] if r["name"].startswith("engine_")} == {
        "engine_trading_signal_lease_idx", "engine_trading_order_signal_idx"}
    assert actual["idx_unique_active_subscription"] == ("subscriptions_subscription", ("user_id",), True, "is_active=true")


def _constraints(catalog: dict[str, list[dict[str, Any]]], kind: str) -> set[tuple[str, tuple[str, ...]]]:
    return {(r["table"], tuple(r["columns"])) for r in catalog["constraints"] if r["kind"] == kind}
