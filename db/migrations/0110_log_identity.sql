-- Which log a saved offset belongs to (docs/architecture.md, "Recovery"). The embedded broker
-- keeps its log in memory and gets a fresh cluster id at every start; an offset saved under
-- another cluster id (or beyond the partition's high watermark) means nothing in this log.
ALTER TABLE engine.checkpoint
    ADD COLUMN cluster_id TEXT NOT NULL DEFAULT '',
    -- per origin partition, the highest forwarded (offset, chunk) applied to this partition's
    -- state: a misrouted tick forwarded twice after a crash is applied once
    ADD COLUMN origins JSONB NOT NULL DEFAULT '{}';

ALTER TABLE engine.feed_offset
    ADD COLUMN cluster_id TEXT NOT NULL DEFAULT '';
