-- Memory v4: agent spans, OpenTelemetry-shaped (trace = run).
-- One row per graph node execution. LLM calls and trials are child spans too, but they
-- are derived at read time from llm_calls and trials (memory.spans), not stored twice.
CREATE TABLE spans (
    span_id       VARCHAR PRIMARY KEY,       -- 16 hex digits, as OTLP wants
    run_id        VARCHAR NOT NULL,          -- the trace
    name          VARCHAR NOT NULL,          -- the graph node: plan | code | verify | ...
    role          VARCHAR NOT NULL,          -- planner | coder | trainer | critic | lab
    candidate_id  VARCHAR,                   -- the candidate in flight, if any
    status        VARCHAR NOT NULL,          -- ok | error
    error         VARCHAR,                   -- the exception, for status error
    started_at    TIMESTAMP NOT NULL,
    ended_at      TIMESTAMP NOT NULL
);
CREATE INDEX spans_run ON spans (run_id, started_at);
