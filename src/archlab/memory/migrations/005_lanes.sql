-- Memory v5: lanes, run time that survives resumes, and the human in the loop.
ALTER TABLE runs ADD COLUMN elapsed_s DOUBLE DEFAULT 0;  -- seconds spent running, all sessions
ALTER TABLE candidates ADD COLUMN lane INTEGER;          -- the graph thread that proposed it
ALTER TABLE candidates ADD COLUMN step INTEGER;          -- the planning step (LLM answers' key)

-- `archlab run --review`: a candidate waits here before training until someone decides.
CREATE TABLE reviews (
    candidate_id  VARCHAR PRIMARY KEY,
    run_id        VARCHAR NOT NULL,
    requested_at  TIMESTAMP NOT NULL,
    decision      VARCHAR,                   -- NULL while waiting | approve | reject
    reason        VARCHAR,
    decided_at    TIMESTAMP
);
CREATE INDEX reviews_run ON reviews (run_id, decision);

-- `archlab steer RUN "note"`: guidance the planner reads before each proposal.
CREATE TABLE notes (
    note_id       VARCHAR PRIMARY KEY,
    run_id        VARCHAR NOT NULL,
    note          VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX notes_run ON notes (run_id, created_at);
