-- Runs asked for through the API wait in the queue as 'queued' until a worker takes them.
ALTER TABLE task_runs DROP CONSTRAINT task_runs_status_check;
ALTER TABLE task_runs DROP CONSTRAINT task_runs_check1;
ALTER TABLE task_runs ADD CONSTRAINT task_runs_status_check
    CHECK (status IN ('queued', 'running', 'success', 'failure', 'skipped'));
ALTER TABLE task_runs ADD CONSTRAINT task_runs_finished_check
    CHECK ((status IN ('queued', 'running')) = (finished_at IS NULL));
ALTER TABLE task_runs ADD COLUMN trigger text NOT NULL DEFAULT 'schedule' CHECK (trigger IN ('schedule', 'manual'));
CREATE INDEX task_runs_status_idx ON task_runs (status, started_at DESC);

-- Online members sampled per community every quarter hour (update_community_analytics); a sample slot is written
-- once however often the task runs in it, and community_presence_daily is recomputed from the day's samples.
CREATE TABLE community_presence_samples (
    community_id bigint      NOT NULL,
    slot         timestamptz NOT NULL,
    online       integer     NOT NULL CHECK (online >= 0),
    PRIMARY KEY (community_id, slot)
);
CREATE INDEX community_presence_samples_slot_idx ON community_presence_samples (slot);
