-- Credit-score deductions for TERMINAL_TAMPER (issue #24), the default of [scoring]
-- deductions (docs/config.md) for databases migrated without `muckwatch db migrate`'s sync;
-- a configured value already there is kept.
INSERT INTO score_deductions (rule, severity, points) VALUES
    ('TERMINAL_TAMPER', 1, 3), ('TERMINAL_TAMPER', 2, 5), ('TERMINAL_TAMPER', 3, 8)
ON CONFLICT (rule, severity) DO NOTHING;
