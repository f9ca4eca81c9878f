-- Schedules changed at runtime (`PATCH /api/tasks/{name}/`): a stored value wins over TASK_SCHEDULES /
-- TASKS_DISABLED, which win over the defaults; NULL: not set through the API. The running worker reloads this
-- table at each whole minute.
CREATE TABLE task_schedules (
    task_name  text        PRIMARY KEY,
    schedule   text,
    enabled    boolean,
    changed_by text        NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
