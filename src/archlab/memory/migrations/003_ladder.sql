-- Memory v3: the verification ladder, seed statistics and fitness definitions.
CREATE TABLE checks (
    candidate_id  VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,          -- static | dedup | smoke | causality | complexity
                                             -- | proxy | confirm | scale
    status        VARCHAR NOT NULL,          -- passed | failed | skipped
    error_class   VARCHAR,
    message       VARCHAR,
    details       JSON,
    checked_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (candidate_id, stage)
);

ALTER TABLE trials ADD COLUMN fitness JSON;      -- the definition the score was computed by
ALTER TABLE candidates ADD COLUMN fitness JSON;
ALTER TABLE candidates ADD COLUMN seeds JSON;    -- confirm stage: n, mean, std, ci
ALTER TABLE candidates ADD COLUMN scale_score DOUBLE;
ALTER TABLE candidates ADD COLUMN audit VARCHAR; -- why a result looks too good to trust
ALTER TABLE runs ADD COLUMN summary JSON;        -- improvement over baseline and random search
