-- Memory v2: every LLM request, whole, and the critic's analysis.
-- One row per HTTP request (or per replayed answer): transport retries and re-asked
-- answers each get their own row. API keys are never stored.
CREATE TABLE llm_calls (
    call_id       VARCHAR PRIMARY KEY,
    run_id        VARCHAR,                   -- NULL for `archlab llm check`
    role          VARCHAR NOT NULL,          -- planner | coder | critic | check
    purpose       VARCHAR NOT NULL,          -- plan | write | repair | critique | check
    candidate_id  VARCHAR,
    step          INTEGER NOT NULL,          -- the run's planning step (idea) ...
    repair        INTEGER NOT NULL,          -- ... and repair of it: replay's key
    attempt       INTEGER NOT NULL,          -- answer attempt within one question, from 1
    retry         INTEGER NOT NULL,          -- transport retry within one attempt, from 0
    brain         VARCHAR NOT NULL,          -- llm:PROFILE | replay:RUN
    model         VARCHAR NOT NULL,
    base_url      VARCHAR,
    request       JSON NOT NULL,             -- the request body: messages and parameters
    response      JSON,                      -- the response body as received
    content       VARCHAR,                   -- the answer without its reasoning
    reasoning     VARCHAR,
    finish_reason VARCHAR,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    tokens_estimated BOOLEAN NOT NULL,       -- the server sent no usage: counted from text
    cost_usd      DOUBLE NOT NULL,
    latency_s     DOUBLE NOT NULL,
    status        VARCHAR NOT NULL,          -- ok | invalid | error
    error         VARCHAR,                   -- the transport error, or why the answer was unusable
    answer        JSON,                      -- the accepted answer, validated (status ok only)
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX llm_calls_run ON llm_calls (run_id, role, step, repair);

ALTER TABLE verdicts ADD COLUMN analysis VARCHAR;
ALTER TABLE verdicts ADD COLUMN brain VARCHAR;
