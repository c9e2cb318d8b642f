-- Memory v9: runs people name and tell apart, and runs continued with changed settings.
ALTER TABLE runs ADD COLUMN name VARCHAR;  -- `archlab run --name`: accepted wherever a run id is
ALTER TABLE runs ADD COLUMN kind VARCHAR DEFAULT 'discovery';  -- discovery | eval (`archlab eval`'s own run)
UPDATE runs SET kind = 'eval' WHERE brain = 'manual';

-- `archlab resume RUN --trials N --llm-model M ...`: each setting a resume changed, per key.
CREATE TABLE run_changes (
    run_id        VARCHAR NOT NULL,
    setting       VARCHAR NOT NULL,          -- the dotted key: run.trials, llm.default.model
    old           JSON,                      -- the value before (NULL: unset)
    new           JSON,                      -- the value the run goes on with
    changed_at    TIMESTAMP NOT NULL
);
CREATE INDEX run_changes_run ON run_changes (run_id, changed_at);
