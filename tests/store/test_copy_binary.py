"""The numpy binary COPY encoder means exactly what it should to PostgreSQL."""

from __future__ import annotations

import numpy as np
import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from store.copy_binary import Column, encode, timestamptz

rows_strategy = st.lists(
    st.tuples(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
              st.integers(-(2**31), 2**31 - 1),
              st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False,
                                             width=32)),
              st.integers(946_684_800_000, 4_102_444_800_000), st.booleans()),
    min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(rows_strategy)
def test_round_trip_through_postgres(dsn, rows):
    texts = sorted({r[0] for r in rows})
    index = np.array([texts.index(r[0]) for r in rows])
    ints = np.array([r[1] for r in rows], np.int64)
    reals = np.array([np.nan if r[2] is None else r[2] for r in rows], np.float64)
    stamps = np.array([r[3] for r in rows], np.int64)
    flags = np.array([r[4] for r in rows])
    payload = encode([
        Column(text=texts, text_index=index),
        Column(values=ints.astype(">i4"), null=ints % 7 == 0),
        Column(values=reals.astype(">f4"), null=np.isnan(reals)),
        Column(values=timestamptz(stamps)),
        Column(values=flags.astype("u1")),
    ], len(rows))
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE c (t text, i int, r real, ts timestamptz, b boolean,"
                    " k serial)")
        with cur.copy("COPY c (t, i, r, ts, b) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(payload)
        back = cur.execute("SELECT t, i, r, (extract(epoch FROM ts) * 1000)::bigint, b"
                           " FROM c ORDER BY k").fetchall()
    for (t, i, r, ts, b), got in zip(rows, back, strict=True):
        assert got[0] == t
        assert got[1] == (None if i % 7 == 0 else i)
        assert (got[2] is None) if r is None else got[2] == np.float32(r)
        assert got[3] == ts and got[4] == b
