-- Credit-score deductions for the manifest's rules (issue #22), the defaults of [scoring]
-- deductions (docs/config.md) for databases migrated without `muckwatch db migrate`'s sync;
-- a configured value already there is kept.
INSERT INTO score_deductions (rule, severity, points) VALUES
    ('WRONG_DESTINATION', 1, 4), ('WRONG_DESTINATION', 2, 6), ('WRONG_DESTINATION', 3, 8),
    ('TRIP_NOT_CLOSED', 1, 4), ('TRIP_NOT_CLOSED', 2, 6), ('TRIP_NOT_CLOSED', 3, 10),
    ('OVERLOAD', 1, 2), ('OVERLOAD', 2, 4), ('OVERLOAD', 3, 6),
    ('PERMIT_VOLUME_EXCEEDED', 1, 3), ('PERMIT_VOLUME_EXCEEDED', 2, 5),
    ('PERMIT_VOLUME_EXCEEDED', 3, 8)
ON CONFLICT (rule, severity) DO NOTHING;
