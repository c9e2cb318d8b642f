-- Memory v7: what a live run is doing now, for its readers in other processes (the web UI).
-- A row when one of a candidate's stages starts, committed at once; deleted with the
-- writes of the node that ran the stage. A killed run's rows stay until it resumes or ends.
CREATE TABLE in_flight (
    marker_id     VARCHAR PRIMARY KEY,       -- drawn fresh for each stage started
    run_id        VARCHAR NOT NULL,
    lane          INTEGER NOT NULL,          -- the graph thread that runs it
    candidate_id  VARCHAR,                   -- NULL: the run's conclusion (its best candidates)
    stage         VARCHAR NOT NULL,          -- verify | review | proxy | confirm | scale
    started_at    TIMESTAMP NOT NULL
);
