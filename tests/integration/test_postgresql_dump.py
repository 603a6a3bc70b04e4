"""postgresql_dump against a real PostgreSQL: awkward names, formats, check mode, retention.

Every effect is probed independently of the module: the files on disk, sha256 computed
here, and ``pg_restore --list`` run by the test itself.
"""

import hashlib
import json
import os
import subprocess
import uuid

import pytest

AWKWARD = 'bosun "odd" db\'s name'
# A table in a schema with a space whose own name holds double quotes.
TOTALS = '"sales dept"."Q1 ""totals"""'

SEED_SQL = """
CREATE TABLE public.orders (id bigint PRIMARY KEY, customer int NOT NULL, note text,
                            payload jsonb, amount numeric(12,2));
INSERT INTO public.orders
  SELECT g, g %% 97, md5(g::text) || ' it''s "quoted"', jsonb_build_object('sku', md5(g::text), 'qty', g %% 7),
         (g * 3.17)::numeric(12,2)
  FROM generate_series(1, %d) g;
CREATE INDEX orders_customer ON public.orders (customer);
CREATE SCHEMA "sales dept";
CREATE TABLE %s (region text, total numeric);
INSERT INTO %s VALUES ('north', 1), ('south', 2);
ALTER TABLE public.orders OWNER TO app;
"""


# -- helpers shared by the backup test files ------------------------------------------------
def qi(name):
    return '"%s"' % name.replace('"', '""')


def unique(prefix):
    return "%s %s" % (prefix, uuid.uuid4().hex[:6])


def create_db(postgres, name, rows=500, owner="app"):
    """A database with an orders table (index, jsonb), a schema and a table with awkward names."""
    postgres.psql("CREATE DATABASE %s OWNER %s" % (qi(name), owner))
    postgres.psql(SEED_SQL % (rows, TOTALS, TOTALS), db=name)
    return name


def drop_db(postgres, name):
    postgres.psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % qi(name))


def table_counts(postgres, db):
    return (
        int(postgres.psql("SELECT count(*) FROM public.orders", db=db)),
        int(postgres.psql("SELECT count(*) FROM %s" % TOTALS, db=db)),  # noqa: S608
        postgres.psql("SELECT md5(string_agg(note || payload::text, ',' ORDER BY id)) FROM public.orders", db=db),
    )


def databases(postgres):
    return postgres.psql("SELECT datname FROM pg_database").splitlines()


def decompressor(path):
    if path.endswith(".zst"):
        return ["zstd", "-d", "-c", "-q", path]
    if path.endswith(".lz4"):
        return ["lz4", "-d", "-c", "-q", path]
    return None


def toc_of(postgres, path):
    """pg_restore --list of a backup, run by the test (decompressing a streamed one first)."""
    pg_restore = os.path.join(postgres.bindir, "pg_restore")
    dec = decompressor(path)
    if dec is None:
        proc = subprocess.run([pg_restore, "-l", path], capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout
    raw = subprocess.run(dec, capture_output=True, timeout=60, check=False)
    assert raw.returncode == 0, raw.stderr
    proc = subprocess.run([pg_restore, "-l"], input=raw.stdout, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def assert_no_secret(result, *secrets):
    text = json.dumps(result)
    for secret in secrets:
        assert secret not in text
        assert secret not in result.get("_stderr", "")


def leftovers(directory):
    """Temp files of an unfinished write anywhere below ``directory``."""
    found = []
    for dirpath, dirs, files in os.walk(directory):
        found.extend(os.path.join(dirpath, n) for n in files + dirs if ".bosun-tmp-" in n)
    return found


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def awkward_db(postgres):
    create_db(postgres, AWKWARD, rows=2000)
    yield AWKWARD
    drop_db(postgres, AWKWARD)


# -- tests -----------------------------------------------------------------------------------------
def test_default_dump_of_awkward_name_check_mode_then_real(postgres, awkward_db, run_module, tmp_path):
    backup_dir = str(tmp_path / "backups")
    args = dict(postgres.conn_args(), db=awkward_db, backup_dir=backup_dir)
    planned = run_module("postgresql_dump", args, check_mode=True)
    assert planned["rc"] == 0, planned.get("msg")
    assert planned["changed"] is True and planned["check_mode"] is True
    assert not os.path.exists(backup_dir)
    (plan,) = planned["backups"]

    result = run_module("postgresql_dump", args)
    assert result["rc"] == 0, result.get("msg")
    assert result["changed"] is True
    (backup,) = result["backups"]
    db_dir = os.path.join(backup_dir, "bosun%20%22odd%22%20db%27s%20name")
    assert os.path.dirname(backup["path"]) == db_dir == os.path.dirname(plan["path"])
    assert backup["path"].endswith(".dump.zst") and plan["path"].endswith(".dump.zst")
    assert backup["compression"] == "zstd" and result["compression"]["via"] == "stream"
    assert os.stat(backup["path"]).st_mode & 0o777 == 0o600
    assert os.stat(db_dir).st_mode & 0o777 == 0o700
    manifest = json.load(open(backup["manifest"]))
    assert manifest["database"] == awkward_db
    assert manifest["sha256"] == sha256_of(backup["path"]) == backup["sha256"]
    assert manifest["size"] == os.path.getsize(backup["path"])
    assert manifest["verified"] is True and manifest["format"] == "custom" and manifest["tables"] == 2
    assert manifest["server_version_num"] >= 100000 and manifest["owner"] == "app"
    assert manifest["duration"] >= 0 and manifest["started"] <= manifest["finished"]
    toc = toc_of(postgres, backup["path"])
    assert "TABLE public orders app" in toc and 'TABLE DATA sales dept Q1 "totals"' in toc
    assert leftovers(backup_dir) == []
    assert all("PGPASSWORD" not in c for c in result["commands"])
    assert_no_secret(result, postgres.password)
    assert_no_secret(planned, postgres.password)


@pytest.mark.parametrize(
    "case",
    [
        ("custom", "lz4", 1, ".dump.lz4"),
        ("custom", "gzip", 1, ".dump"),
        ("custom", "none", 1, ".dump"),
        ("directory", "auto", 2, ".dir"),
    ],
    ids=["lz4", "gzip-full-verify", "none", "directory-jobs"],
)
def test_formats_and_compressions(postgres, awkward_db, run_module, tmp_path, case):
    fmt, compression, jobs, suffix = case
    args = dict(
        postgres.conn_args(), db=awkward_db, backup_dir=str(tmp_path), format=fmt, compression=compression, jobs=jobs
    )
    if compression == "gzip":
        args["verify"] = "full"
    result = run_module("postgresql_dump", args)
    assert result["rc"] == 0, result.get("msg")
    (backup,) = result["backups"]
    assert backup["path"].endswith(suffix)
    toc = toc_of(postgres, backup["path"])
    assert "TABLE public orders app" in toc
    if compression == "gzip":
        assert "Compression: 6" in toc
        assert any("-f /dev/null" in c for c in result["commands"])
    if compression == "none":
        assert "Compression: 0" in toc
    if fmt == "directory":
        assert os.path.isdir(backup["path"]) and "Format: DIRECTORY" in toc
        assert any("-Fd -j 2" in c for c in result["commands"])


def test_retention_check_mode_predicts_exactly(postgres, awkward_db, run_module, tmp_path):
    base = dict(postgres.conn_args(), db=awkward_db, backup_dir=str(tmp_path))
    paths = []
    for i in (1, 2, 3):
        r = run_module("postgresql_dump", dict(base, label="r%d" % i))
        assert r["rc"] == 0, r.get("msg")
        paths.append(r["backups"][0]["path"])
    args = dict(base, label="r4", keep_last=2)
    planned = run_module("postgresql_dump", args, check_mode=True)
    assert planned["rc"] == 0, planned.get("msg")
    assert planned["deleted"] == [paths[1], paths[0]]
    assert all(os.path.exists(p) for p in paths)
    done = run_module("postgresql_dump", args)
    assert done["rc"] == 0, done.get("msg")
    assert done["deleted"] == planned["deleted"] and done["changed"] is planned["changed"] is True
    assert not os.path.exists(paths[0]) and not os.path.exists(paths[1])
    assert not os.path.exists(paths[0].replace(".dump.zst", ".manifest.json"))
    assert done["kept"] == [done["backups"][0]["path"], paths[2]]
    # Retention alone, nothing left to delete: no change predicted and none made.
    alone = dict(base, dump=False, keep_last=2)
    assert run_module("postgresql_dump", alone, check_mode=True)["changed"] is False
    assert run_module("postgresql_dump", alone)["changed"] is False


def test_all_databases_and_globals_with_metrics(postgres, awkward_db, run_module, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    args = dict(postgres.conn_args(), all_databases=True, backup_dir=str(tmp_path / "b"), metrics_dir=str(metrics_dir))
    result = run_module("postgresql_dump", args)
    assert result["rc"] == 0, result.get("msg")
    kinds = dict((b["database"], b) for b in result["backups"])
    assert {None, "postgres", "app", awkward_db} <= set(kinds)
    globals_sql = open(kinds[None]["path"]).read()
    assert kinds[None]["path"].endswith(".sql") and "/_globals/" in kinds[None]["path"]
    assert "CREATE ROLE app;" in globals_sql and os.stat(kinds[None]["path"]).st_mode & 0o777 == 0o600
    prom = (metrics_dir / "bosun_backup_bosun%20%22odd%22%20db%27s%20name.prom").read_text()
    assert 'bosun_backup_last_status{database="bosun \\"odd\\" db\'s name",kind="database"} 1' in prom
    size = kinds[awkward_db]["size"]
    assert 'bosun_backup_last_size_bytes{database="bosun \\"odd\\" db\'s name",kind="database"} %d' % size in prom
    assert (metrics_dir / "bosun_backup__globals.prom").exists()
    assert [n for n in os.listdir(str(metrics_dir)) if not n.endswith(".prom")] == []


def test_stale_temp_files_removed_and_predicted(postgres, awkward_db, run_module, tmp_path):
    db_dir = tmp_path / "app"
    db_dir.mkdir()
    stale = db_dir / ".20250101T000000Z.dump.zst.bosun-tmp-k1ll3d"
    stale.write_bytes(b"half a dump")
    args = dict(postgres.conn_args(), db="app", backup_dir=str(tmp_path))
    planned = run_module("postgresql_dump", args, check_mode=True)
    assert planned["stale_temp_files"] == [str(stale)] and stale.exists()
    done = run_module("postgresql_dump", args)
    assert done["rc"] == 0 and done["stale_temp_files"] == [str(stale)]
    assert not stale.exists() and leftovers(str(tmp_path)) == []


def test_tls_verify_full_as_app_user_ignoring_inherited_pg_env(postgres, run_module, tmp_path):
    args = dict(
        postgres.conn_args(login_user="app", login_password=postgres.app_password, login_host="localhost"),
        db="app",
        backup_dir=str(tmp_path),
        ssl_mode="verify-full",
        ca_cert=postgres.ca_cert,
    )
    hostile = dict(os.environ, PGHOST="192.0.2.1", PGPORT="1", PGUSER="nobody", PGPASSWORD="wrong", PGSSLMODE="disable")
    result = run_module("postgresql_dump", args, env=hostile)
    assert result["rc"] == 0, result.get("msg")
    toc = toc_of(postgres, result["backups"][0]["path"])
    assert "Format: CUSTOM" in toc and "Dumped from database version" in toc
    assert_no_secret(result, postgres.app_password, postgres.password)


def test_missing_database_fails_clearly_and_writes_nothing(postgres, run_module, tmp_path):
    args = dict(postgres.conn_args(), db="no such db", backup_dir=str(tmp_path / "b"))
    for check_mode in (True, False):
        r = run_module("postgresql_dump", args, check_mode=check_mode)
        assert r["failed"] and r["changed"] is False
        assert 'database "no such db" does not exist' in r["msg"]
        assert not os.path.exists(str(tmp_path / "b"))
        assert_no_secret(r, postgres.password)
