"""Benchmark: bosun.platform.postgresql_dump (defaults) against ``pg_dump -Fc`` (defaults).

Run by hand from the collection root (not part of the test suite):

    .venv/bin/python benchmarks/postgresql_dump.py [--size-gb 1.5] [--json out.json]

It starts its own PostgreSQL on loopback (tests/support/servers.py) and loads an orders-like
table of realistic, poorly compressible rows (random amounts, timestamps, statuses, jsonb
line items, addresses, hex notes, tracking codes, base64 payment tokens, e-mail addresses;
a primary key and two indexes) until
the database reaches ``--size-gb``. pgbench's filler compresses about 50:1 and would hide
the compressor's cost, so it is not used. Then, one after another, once each:

  ceiling   pg_dump -Fc -Z0 > /dev/null   what reading the data costs, nothing written
  default   pg_dump -Fc -f FILE           pg_dump's defaults (gzip level 6, fsync)
  module    the postgresql_dump module with its defaults, run as Ansible runs it: dump,
            zstd stream, sha256, fsync, pg_restore --list verification, manifest
  pipe      pg_dump -Fc -Z0 | zstd -1 -T0 > FILE   the bare pipeline, for the module's overhead
  ceiling   once more at the end: the two show how steady the machine was

and prints wall time, output size and the ratios the issue sets as targets: the module at
least 3.5x faster than the default, output no larger, within 1.3x of the ceiling (the mean
of the two ceiling runs). On a machine shared with other work the wall times move with its
load; the load averages are printed with the figures. Only
loopback is contacted; every step has a timeout and the whole run a deadline; the server
and every file are removed at the end.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support.collection import install  # noqa: E402
from tests.support.modules import run_module  # noqa: E402
from tests.support.servers import PostgresServer, TestCA  # noqa: E402

DB = "orders bench"
CHUNK_ROWS = 200_000
STEP_TIMEOUT = 900  # seconds for any one dump
MAX_TOTAL = 2400  # seconds for the whole benchmark, load included
SERVER_SETTINGS = {
    "shared_buffers": "'512MB'",
    "maintenance_work_mem": "'512MB'",
    "max_wal_size": "'8GB'",
    "checkpoint_timeout": "'30min'",
    "synchronous_commit": "off",
    "wal_level": "minimal",
    "max_wal_senders": 0,
    "autovacuum": "off",
    "max_parallel_maintenance_workers": 2,
}

SCHEMA = """
CREATE TABLE orders (
  id bigint NOT NULL,
  customer_id integer NOT NULL,
  created_at timestamptz NOT NULL,
  status text NOT NULL,
  currency char(3) NOT NULL,
  amount numeric(12,2) NOT NULL,
  items jsonb NOT NULL,
  shipping_address text NOT NULL,
  note text,
  tracking text,
  payment_token text,
  customer_email text
)
"""

# One chunk of rows; %(lo)s and %(hi)s are the id range. Every value is drawn at random, so
# the only redundancy is what real orders have: field names, a few statuses and currencies,
# street and city names, mail domains, the alphabets of hex and base64 tokens. pg_dump's
# default output is about 2.9:1 of the database size, zstd -1 about 3:1, lz4 about 2:1.
LOAD = """
INSERT INTO orders
SELECT g,
       (random() * 500000)::int,
       timestamptz '2023-01-01' + random() * interval '700 days',
       (ARRAY['new','paid','packed','shipped','delivered','refunded'])[1 + (random() * 5)::int],
       (ARRAY['EUR','USD','GBP','CHF'])[1 + (random() * 3)::int],
       round((random() * 2000)::numeric, 2),
       (SELECT jsonb_agg(jsonb_build_object(
                 'sku', 'SKU-' || (random() * 1000000)::int,
                 'qty', 1 + (random() * 4)::int,
                 'price', round((random() * 300)::numeric, 2),
                 'gift', random() < 0.1))
          FROM generate_series(0, (random() * 3)::int + (g * 0))),
       (1 + (random() * 9998)::int) || ' '
         || (ARRAY['Main St','High St','Station Rd','Church Ln','Mill Rd','Park Ave','Oak Dr','Lake View'])
              [1 + (random() * 7)::int] || ', '
         || lpad((random() * 99999)::int::text, 5, '0') || ' '
         || (ARRAY['Berlin','Paris','London','Zurich','Vienna','Madrid','Rome','Oslo','Lisbon','Prague'])
              [1 + (random() * 9)::int],
       md5(random()::text) || md5(random()::text) || ' ' || md5(random()::text) || ' ' || md5(random()::text),
       upper(substr(md5(random()::text), 1, 22)),
       encode(decode(md5(random()::text) || md5(random()::text), 'hex'), 'base64'),
       substr(md5(random()::text), 1, 14) || '@'
         || (ARRAY['example.com','mail.test','corp.example','shop.test'])[1 + (random() * 3)::int]
FROM generate_series(%(lo)s, %(hi)s) g
"""

INDEXES = [
    "ALTER TABLE orders ADD PRIMARY KEY (id)",
    "CREATE INDEX orders_customer ON orders (customer_id, created_at)",
    "CREATE INDEX orders_status ON orders (status)",
]


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        left = self.end - time.monotonic()
        if left <= 0:
            raise SystemExit("benchmark deadline reached; stopping")
        return left


def connect(pg, db):
    import psycopg2

    conn = psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=db)
    conn.autocommit = True
    return conn


def db_size(pg):
    conn = connect(pg, DB)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            return cur.fetchone()[0]
    finally:
        conn.close()


def load(pg, target_bytes, deadline):
    """Fill the table with two loader sessions (two cores) until the database reaches the target."""
    pg.psql('CREATE DATABASE "%s"' % DB)
    pg.psql(SCHEMA, db=DB)
    t0 = time.monotonic()
    next_id = [1]
    lock = threading.Lock()
    stop = threading.Event()
    errors = []
    # Indexes add about a quarter on top of the heap: stop loading at 80 % of the target.
    heap_target = int(target_bytes * 0.8)

    def loader():
        conn = connect(pg, DB)
        try:
            with conn.cursor() as cur:
                while not stop.is_set() and deadline.left() > 60:
                    with lock:
                        lo = next_id[0]
                        next_id[0] += CHUNK_ROWS
                    cur.execute(LOAD, dict(lo=lo, hi=lo + CHUNK_ROWS - 1))
                    cur.execute("SELECT pg_table_size('orders')")
                    if cur.fetchone()[0] >= heap_target:
                        stop.set()
        except Exception as exc:  # report and stop the other loader too
            errors.append(exc)
            stop.set()
        finally:
            conn.close()

    threads = [threading.Thread(target=loader), threading.Thread(target=loader)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=5)
        print("  loading ... %.0f MB after %.0f s" % (db_size(pg) / 1e6, time.monotonic() - t0), flush=True)
    if errors:
        raise errors[0]
    for statement in INDEXES:
        pg.psql(statement, db=DB)
    pg.psql("VACUUM ANALYZE orders", db=DB)
    pg.psql("CHECKPOINT")
    return time.monotonic() - t0


def timed(argv, env, deadline, stdout=None, stdin=None):
    t0 = time.monotonic()
    proc = subprocess.run(
        argv,
        env=env,
        stdout=stdout,
        stdin=stdin,
        stderr=subprocess.PIPE,
        timeout=min(STEP_TIMEOUT, deadline.left()),
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit("%s failed: %s" % (argv[0], proc.stderr.decode(errors="replace")[-2000:]))
    return time.monotonic() - t0


def run_pipe(pg_dump, env, out_path, deadline):
    t0 = time.monotonic()
    with open(out_path, "wb") as out:
        dump = subprocess.Popen([pg_dump, "-Fc", "-Z0"], env=env, stdout=subprocess.PIPE)
        comp = subprocess.Popen(["zstd", "-1", "-T0", "-q", "-c"], stdin=dump.stdout, stdout=out)
        dump.stdout.close()
        rc_comp = comp.wait(timeout=min(STEP_TIMEOUT, deadline.left()))
        rc_dump = dump.wait(timeout=60)
        out.flush()
        os.fsync(out.fileno())
    if rc_dump or rc_comp:
        raise SystemExit("pg_dump | zstd failed: %s, %s" % (rc_dump, rc_comp))
    return time.monotonic() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--size-gb", type=float, default=1.5, help="database size to load (default 1.5)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if not shutil.which("zstd"):
        raise SystemExit("zstd is needed (apt-get install zstd)")
    deadline = Deadline(MAX_TOTAL)
    install()
    work = tempfile.mkdtemp(prefix="bosun-bench-dump-")
    figures = {}
    try:
        with TestCA() as ca, PostgresServer(ca, settings=SERVER_SETTINGS) as pg:
            pg_dump = os.path.join(pg.bindir, "pg_dump")
            env = pg.env(PGDATABASE=DB)
            print("PostgreSQL %s on 127.0.0.1:%d; loading about %.1f GB ..." % (pg.version, pg.port, args.size_gb))
            figures["load_seconds"] = round(load(pg, int(args.size_gb * 1e9), deadline), 1)
            figures["database_bytes"] = db_size(pg)
            print("database: %.2f GB in %.0f s" % (figures["database_bytes"] / 1e9, figures["load_seconds"]))

            figures["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
            with open(os.devnull, "wb") as devnull:
                figures["ceiling_seconds"] = timed([pg_dump, "-Fc", "-Z0"], env, deadline, stdout=devnull)
            print("ceiling  pg_dump -Fc -Z0 > /dev/null      %7.1f s" % figures["ceiling_seconds"])

            module_dir = os.path.join(work, "module")
            t0 = time.monotonic()
            result = run_module(
                "postgresql_dump", dict(pg.conn_args(), db=DB, backup_dir=module_dir), timeout=STEP_TIMEOUT
            )
            figures["module_seconds"] = time.monotonic() - t0
            if result.get("failed"):
                raise SystemExit("postgresql_dump failed: %s" % result.get("msg"))
            backup = result["backups"][0]
            figures["module_bytes"] = backup["size"]
            figures["module_reported_duration"] = backup["duration"]
            figures["module_compression"] = result["compression"]
            print(
                "module   postgresql_dump (defaults)       %7.1f s  %7.0f MB  (%s via %s; dump+verify %.1f s)"
                % (
                    figures["module_seconds"],
                    backup["size"] / 1e6,
                    result["compression"]["method"],
                    result["compression"]["via"],
                    backup["duration"],
                )
            )

            default_path = os.path.join(work, "default.dump")
            figures["default_seconds"] = timed([pg_dump, "-Fc", "-f", default_path], env, deadline)
            figures["default_bytes"] = os.path.getsize(default_path)
            os.unlink(default_path)
            print(
                "default  pg_dump -Fc -f FILE              %7.1f s  %7.0f MB"
                % (figures["default_seconds"], figures["default_bytes"] / 1e6)
            )

            pipe_path = os.path.join(work, "pipe.dump.zst")
            figures["pipe_seconds"] = run_pipe(pg_dump, env, pipe_path, deadline)
            figures["pipe_bytes"] = os.path.getsize(pipe_path)
            os.unlink(pipe_path)
            print(
                "pipe     pg_dump -Fc -Z0 | zstd -1 -T0    %7.1f s  %7.0f MB"
                % (figures["pipe_seconds"], figures["pipe_bytes"] / 1e6)
            )

            with open(os.devnull, "wb") as devnull:
                figures["ceiling_again_seconds"] = timed([pg_dump, "-Fc", "-Z0"], env, deadline, stdout=devnull)
            print("ceiling  again                            %7.1f s" % figures["ceiling_again_seconds"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    speedup = figures["default_seconds"] / figures["module_seconds"]
    size_ratio = float(figures["module_bytes"]) / figures["default_bytes"]
    ceiling = (figures["ceiling_seconds"] + figures["ceiling_again_seconds"]) / 2
    to_ceiling = figures["module_seconds"] / ceiling
    figures.update(
        speedup_vs_default=round(speedup, 2),
        size_vs_default=round(size_ratio, 3),
        module_vs_ceiling=round(to_ceiling, 2),
        compression_ratio_module=round(float(figures["database_bytes"]) / figures["module_bytes"], 2),
        compression_ratio_default=round(float(figures["database_bytes"]) / figures["default_bytes"], 2),
        cpus=os.cpu_count(),
        load_average=[round(x, 2) for x in os.getloadavg()],
    )
    print()
    print("module vs default: %.2fx faster (target >= 3.5x)  %s" % (speedup, "ok" if speedup >= 3.5 else "MISSED"))
    print("size vs default:   %.3f (target <= 1)             %s" % (size_ratio, "ok" if size_ratio <= 1 else "MISSED"))
    print(
        "module vs ceiling: %.2fx (target <= 1.3x)          %s" % (to_ceiling, "ok" if to_ceiling <= 1.3 else "MISSED")
    )
    print(
        "database / backup: %.2f (module), %.2f (default); load average %s before, %s after, %d CPUs"
        % (
            figures["compression_ratio_module"],
            figures["compression_ratio_default"],
            " ".join("%.2f" % x for x in figures["load_average_before"]),
            " ".join("%.2f" % x for x in figures["load_average"]),
            figures["cpus"],
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
