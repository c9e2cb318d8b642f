-- Memory v6: the trained weights of candidates that reached the confirm stage, kept as
-- safetensors files beside the memory (memory.weights). One row per candidate: the
-- weights of its proxy trial (the proxy seed), checked and rewritten on the trusted side.
CREATE TABLE weights (
    candidate_id  VARCHAR PRIMARY KEY,
    run_id        VARCHAR NOT NULL,
    trial_id      VARCHAR NOT NULL,          -- the trial that trained them
    path          VARCHAR NOT NULL,          -- the file, relative to the archlab home
    bytes         BIGINT NOT NULL,
    sha256        VARCHAR NOT NULL,          -- of the file as stored
    spec          JSON NOT NULL,             -- what build_model(spec) saw: rebuild with it
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX weights_run ON weights (run_id);
