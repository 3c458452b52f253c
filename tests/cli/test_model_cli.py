"""``sharewise model import|list|show|export|lease|leases`` as a user runs them: subprocesses, a real database.

Model files are built here (scikit-learn + skl2onnx, onnx.helper). The pickle written for the refusal
cases is only ever written, never loaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import pickle
import stat
import uuid
import zipfile
from pathlib import Path

import pytest

from db.seed_demo import DEMO_EMAIL, seed_demo
from db.models import LEASE_KEYS
from tests.cli.test_broker_cli import query, sharewise
from tests.engine.models.builders import classifier, custom_domain, external_data, regressor

LESSEE = "lessee@sharewise.local"
FEATURES = "close,rsi_14,ema(50)"


@pytest.fixture
def demo(pg_dsn):
    async def seed() -> None:
        await seed_demo(pg_dsn)
        import asyncpg

        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("INSERT INTO public.users_customuser (email, username) VALUES ($1, 'lessee')", LESSEE)
        finally:
            await conn.close()

    asyncio.run(seed())
    return pg_dsn


@pytest.fixture(scope="module")
def forest() -> bytes:
    return classifier(3)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def import_(home: Path, dsn: str, file: Path, *extra: str, name: str = "forest", features: str = FEATURES):
    return sharewise("model", "import", str(file), "--owner", DEMO_EMAIL, "--name", name, "--features", features,
                     *extra, home=home, database_url=dsn)


def model_count(dsn: str) -> int:
    return query(dsn, "SELECT count(*) AS n FROM ai_studio_mlmodel")[0]["n"]


def test_a_good_model_imports_once_and_exports_the_same_bytes(demo, tmp_path, forest):
    home, file = tmp_path / "home", write(tmp_path / "forest.onnx", forest)
    sha = hashlib.sha256(forest).hexdigest()
    first = import_(home, demo, file, "--algorithm", "RANDOM_FOREST", "--threshold", "0.6", "--json")
    assert first.returncode == 0, first.stderr
    done = json.loads(first.stdout)
    assert (done["name"], done["sha256"], done["size"], done["created"]) == ("forest", sha, len(forest), True)
    stored = home / "models" / f"{sha}.onnx"
    assert stored.read_bytes() == forest and stat.S_IMODE(stored.stat().st_mode) == 0o644

    (row,) = query(demo, "SELECT m.*, u.email FROM ai_studio_mlmodel m JOIN users_customuser u ON u.id = m.user_id")
    assert (str(row["id"]), row["email"], row["status"], row["model_type"], row["algorithm"], row["file_path"],
            row["model_size"]) == (done["id"], DEMO_EMAIL, "COMPLETED", "CLASSIFICATION", "RANDOM_FOREST",
                                   f"models/{sha}.onnx", len(forest))
    assert json.loads(row["features"]) == ["close", "rsi_14", "ema_50"]
    assert json.loads(row["hyperparameters"]) == {"threshold": 0.6, "labels": {"1": "BUY", "-1": "SELL"}}
    assert json.loads(row["training_config"])["zipmap"] is True

    again = import_(home, demo, file, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) | {"created": None} == done | {"created": None}
    assert json.loads(again.stdout)["created"] is False and model_count(demo) == 1

    listed = sharewise("model", "list", "--json", home=home, database_url=demo)
    shown = sharewise("model", "show", done["id"], home=home, database_url=demo)
    assert listed.returncode == 0 and shown.returncode == 0, listed.stderr + shown.stderr
    assert [m["id"] for m in json.loads(listed.stdout)] == [done["id"]]
    assert sha in shown.stdout and "output_probability (ZipMap)" in shown.stdout

    out = tmp_path / "copy.onnx"
    exported = sharewise("model", "export", done["id"], "--out", str(out), home=home, database_url=demo)
    assert exported.returncode == 0, exported.stderr
    assert out.read_bytes() == forest

    stored.write_bytes(forest[:-1] + bytes([forest[-1] ^ 1]))
    tampered = sharewise("model", "export", done["id"], "--out", str(tmp_path / "again.onnx"), home=home,
                         database_url=demo)
    assert tampered.returncode == 2 and "tampered" in tampered.stderr
    assert not (tmp_path / "again.onnx").exists()


def test_a_model_without_zipmap_and_a_regression_import(demo, tmp_path):
    home = tmp_path / "home"
    plain = import_(home, demo, write(tmp_path / "p.onnx", classifier(2, zipmap=False)), "--json",
                    name="plain", features="close,volume")
    assert plain.returncode == 0, plain.stderr
    lin = write(tmp_path / "lin.onnx", regressor(2))
    no_threshold = import_(home, demo, lin, "--type", "REGRESSION", name="lin", features="close,volume")
    assert no_threshold.returncode == 2 and "--threshold > 0" in no_threshold.stderr
    ok = import_(home, demo, lin, "--type", "REGRESSION", "--threshold", "0.5", "--labels", '{"up": "buy"}',
                 name="lin", features="close,volume")
    assert ok.returncode == 0, ok.stderr
    (row,) = query(demo, "SELECT hyperparameters FROM ai_studio_mlmodel WHERE name = 'lin'")
    assert json.loads(row["hyperparameters"]) == {"threshold": 0.5, "labels": {"up": "BUY"}}
    bad_labels = import_(home, demo, lin, "--type", "REGRESSION", "--threshold", "1", "--labels", '{"1": "HOLD"}',
                         name="lin2", features="close,volume")
    assert bad_labels.returncode == 2 and "BUY or SELL" in bad_labels.stderr


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # the layout of a joblib/torch archive: a pickle inside a zip
        archive.writestr("archive/data.pkl", pickle.dumps({"a": 1}))
    return buffer.getvalue()


@pytest.mark.parametrize("data, says", [
    (pickle.dumps({"a": 1}), "looks like a pickle"),
    (_zip_bytes(), "zip or joblib"),
    (b"just some text, not a model", "not an ONNX model"),
])
def test_pickles_zips_and_other_files_are_refused(demo, tmp_path, data, says):
    home = tmp_path / "home"
    refused = import_(home, demo, write(tmp_path / "model.pkl", data))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert says in refused.stderr and "only ONNX files are accepted" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) <= 2
    assert model_count(demo) == 0 and not (home / "models").exists()


@pytest.mark.parametrize("build, features, says", [
    (lambda: custom_domain(2), "close,volume", "com.evil"),
    (lambda: external_data(2), "close,volume", "external file"),
    (lambda: classifier(3), "close,volume", r"must have shape [N, 2]"),
    (lambda: classifier(3), "close,volume,moon_phase", "'moon_phase' is unknown"),
])
def test_bad_graphs_and_features_are_refused(demo, tmp_path, build, features, says):
    refused = import_(tmp_path / "home", demo, write(tmp_path / "m.onnx", build()), features=features)
    assert refused.returncode == 2 and says in refused.stderr.replace("\n", ""), refused.stderr
    assert model_count(demo) == 0


def test_a_lease_round_trip(demo, tmp_path, forest):
    home = tmp_path / "home"
    imported = import_(home, demo, write(tmp_path / "f.onnx", forest), "--json")
    model_id = json.loads(imported.stdout)["id"]
    leased = sharewise("model", "lease", model_id, "--to", LESSEE, "--start", "2025-01-01", "--end", "2025-03-31",
                       "--price", "1499.00", "--lease-type", "quarterly", "--performance-fee", "10", "--json",
                       home=home, database_url=demo)
    assert leased.returncode == 0, leased.stderr
    lease_id = json.loads(leased.stdout)["id"]

    listed = sharewise("model", "leases", "--json", home=home, database_url=demo)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert list(row) == list(LEASE_KEYS)
    assert (row["id"], row["model_id"], row["model_name"], row["lessor_email"], row["lessee_email"],
            row["lease_type"], row["price"], row["performance_fee_percentage"], row["start_date"], row["end_date"],
            row["is_active"], row["total_signals_generated"], row["usage_stats"]) == (
        lease_id, model_id, "forest", DEMO_EMAIL, LESSEE, "QUARTERLY", "1499.00", "10.00", "2025-01-01",
        "2025-03-31", True, 0, {})
    table = sharewise("model", "leases", home=home, database_url=demo)
    assert table.returncode == 0 and lease_id in table.stdout and "1,499.00" in table.stdout

    def lease(*args: str):
        return sharewise("model", "lease", model_id, *args, home=home, database_url=demo)

    base = ("--start", "2025-01-01", "--end", "2025-01-31", "--price", "10")
    to_owner = lease("--to", DEMO_EMAIL, *base)
    backwards = lease("--to", LESSEE, "--start", "2025-02-01", "--end", "2025-01-01", "--price", "10")
    negative = lease("--to", LESSEE, "--start", "2025-01-01", "--end", "2025-01-31", "--price", "-1")
    unknown = sharewise("model", "lease", str(uuid.uuid4()), "--to", LESSEE, *base, home=home, database_url=demo)
    for result, says in ((to_owner, "own model"), (backwards, "before it starts"), (negative, "negative"),
                         (unknown, "no model")):
        assert result.returncode == 2 and says in result.stderr, result.stderr
    assert len(query(demo, "SELECT id FROM ai_studio_modellease")) == 1
