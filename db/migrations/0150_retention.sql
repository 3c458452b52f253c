-- Data retention (README.md, "Data retention"; db/retention.py holds the policy): rows the seed
-- archives move out of public into the schema "archive", into tables with exactly the public
-- tables' columns (LIKE ... INCLUDING ALL copies defaults, checks and indexes, never foreign keys:
-- an archived row may point to a row still in public, or to one archived too).
CREATE SCHEMA IF NOT EXISTS archive;

CREATE TABLE archive.trading_signal (LIKE public.trading_signal INCLUDING ALL);
CREATE TABLE archive.notifications_notification (LIKE public.notifications_notification INCLUDING ALL);
CREATE TABLE archive.ai_studio_mlmodel (LIKE public.ai_studio_mlmodel INCLUDING ALL);
CREATE TABLE archive.ai_studio_trainingjob (LIKE public.ai_studio_trainingjob INCLUDING ALL);

-- One row per `sharewise db retention` run (dry runs included, dry_run = true), written when the run
-- starts and completed when it ends: a run that died midway keeps finished_at NULL. counts holds the
-- report per table (archived, deleted, held_back with its reasons, skipped_locked, kept).
CREATE TABLE engine.retention_run (
    id           BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    as_of        DATE        NOT NULL,
    dry_run      BOOLEAN     NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at  TIMESTAMPTZ,
    counts       JSONB       NOT NULL DEFAULT '{}'
);
