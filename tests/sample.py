"""A small database with awkward content, shared by the tests that back it up and restore it."""

SAMPLE_SQL = """
CREATE SCHEMA app;
CREATE TABLE app.users (id serial PRIMARY KEY, email text NOT NULL, bio text);
CREATE TABLE app.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id int REFERENCES app.users(id),
                         amount numeric(10,2), meta jsonb);
CREATE TABLE public.empty_table (id int);
CREATE TABLE public."Ünïcödé täble" ("naïve col" text);
INSERT INTO app.users (email, bio)
    SELECT 'user' || g || '@example.com',
           CASE WHEN g % 3 = 0 THEN E'line one\\nline two\\twith tab \\\\. not an end' ELSE 'plain' END
    FROM generate_series(1, 1200) g;
INSERT INTO app.orders (user_id, amount, meta)
    SELECT 1 + g % 1200, g * 1.5, jsonb_build_object('n', g) FROM generate_series(1, 3000) g;
INSERT INTO public."Ünïcödé täble" VALUES ('ça'), (E'\\\\.'), ('日本');
"""

EXPECTED_TABLES = {
    "app.users": 1200,
    "app.orders": 3000,
    "public.empty_table": 0,
    "public.Ünïcödé täble": 3,
}
