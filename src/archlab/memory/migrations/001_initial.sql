-- Memory v1: runs, candidates, trials and the critic's verdicts.
CREATE TABLE runs (
    run_id        VARCHAR PRIMARY KEY,
    task          VARCHAR NOT NULL,
    task_fingerprint VARCHAR NOT NULL,
    status        VARCHAR NOT NULL,          -- running | finished | failed | interrupted
    brain         VARCHAR NOT NULL,
    seed          BIGINT NOT NULL,
    config        JSON NOT NULL,
    message       VARCHAR,
    started_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP
);

CREATE TABLE candidates (
    candidate_id  VARCHAR PRIMARY KEY,
    run_id        VARCHAR NOT NULL,
    task          VARCHAR NOT NULL,
    task_fingerprint VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    source_hash   VARCHAR NOT NULL,          -- whitespace- and comment-normalized
    ast_hash      VARCHAR,                   -- AST-normalized; NULL if it does not parse
    parents       JSON NOT NULL,             -- list of candidate ids
    plan          JSON NOT NULL,             -- hypothesis, motivation, expected_effect, ...
    genome        JSON,                      -- compose mode only
    genome_key    VARCHAR,
    brain         VARCHAR NOT NULL,
    origin        VARCHAR NOT NULL,          -- baseline | proposed | manual
    status        VARCHAR NOT NULL,          -- pending | ok | failed | rejected | duplicate
    error_class   VARCHAR,
    message       VARCHAR,
    score         DOUBLE,
    metrics       JSON,
    n_params      BIGINT,
    duplicate_of  VARCHAR,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
CREATE INDEX candidates_task ON candidates (task_fingerprint, status);
CREATE INDEX candidates_hash ON candidates (task_fingerprint, source_hash);

CREATE TABLE trials (
    trial_id      VARCHAR PRIMARY KEY,
    candidate_id  VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,          -- smoke | proxy | confirm | scale
    seed          BIGINT NOT NULL,
    budget        JSON NOT NULL,
    status        VARCHAR NOT NULL,          -- ok | error
    error_class   VARCHAR,
    message       VARCHAR,
    exit_reason   VARCHAR NOT NULL,
    wall_time_s   DOUBLE NOT NULL,
    cpu_time_s    DOUBLE,
    peak_rss_mb   DOUBLE,
    isolation     VARCHAR NOT NULL,
    score         DOUBLE,
    metrics       JSON,
    curve         JSON,                      -- held-out metric per checkpoint (trusted side)
    loss_curve    JSON,                      -- training loss as the child reported it
    log_tail      VARCHAR,
    finished_at   TIMESTAMP NOT NULL
);
CREATE INDEX trials_candidate ON trials (candidate_id);

CREATE TABLE verdicts (
    candidate_id  VARCHAR PRIMARY KEY,
    run_id        VARCHAR NOT NULL,
    verdict       VARCHAR NOT NULL,          -- accept | reject
    reason        VARCHAR NOT NULL,
    insight       VARCHAR,
    created_at    TIMESTAMP NOT NULL
);
