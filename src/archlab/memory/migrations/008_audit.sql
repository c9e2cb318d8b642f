-- Memory v8: the audit. A confirmed gain too large to take on trust is checked by sandboxed
-- trials whose outcome decides it (accept or reject); `audit` is no longer a verdict.

-- A stage may hold several checks (the audit's): each has a name, part of the key.
CREATE TABLE checks_v6 (
    candidate_id  VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,          -- static | dedup | smoke | causality | complexity
                                             -- | proxy | confirm | audit | scale
    name          VARCHAR NOT NULL DEFAULT '', -- the check within its stage: fresh_data,
                                             -- shuffled_control or causality for the audit;
                                             -- '' for a stage's only check
    status        VARCHAR NOT NULL,          -- passed | failed | skipped
    error_class   VARCHAR,
    message       VARCHAR,
    details       JSON,                      -- what was measured: scores, thresholds, seeds
    checked_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (candidate_id, stage, name)
);
INSERT INTO checks_v6
    SELECT candidate_id, stage, '', status, error_class, message, details, checked_at FROM checks;
DROP TABLE checks;
ALTER TABLE checks_v6 RENAME TO checks;

-- Results that older versions flagged `audit` were never audited: neither accepted nor
-- rejected. Their verdict becomes NULL (none; reason, insight and analysis are kept), and a
-- run summary that counted one as its accepted best no longer does.
UPDATE runs SET summary = json_merge_patch(summary, '{"best": {"accepted": false}}')
    WHERE summary->'best'->>'candidate_id' IN
        (SELECT candidate_id FROM verdicts WHERE verdict = 'audit');
ALTER TABLE verdicts ALTER COLUMN verdict DROP NOT NULL;
UPDATE verdicts SET verdict = NULL,
    reason = 'not audited (judged before archlab audited gains this large): ' || reason
    WHERE verdict = 'audit';
UPDATE candidates SET audit = 'not audited: ' || audit WHERE audit IS NOT NULL;
COMMENT ON COLUMN verdicts.verdict IS 'accept | reject | repair; NULL: none (not audited, from v5)';
COMMENT ON COLUMN candidates.audit IS 'the audit''s outcome in a sentence (before v6: why a result looked too good)';
COMMENT ON COLUMN trials.stage IS 'smoke | proxy | confirm | audit | scale';
