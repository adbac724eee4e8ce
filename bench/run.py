"""``make bench``: run the benchmarks and rewrite docs/performance.md.

Targets are ratios measured in the same run (this machine is shared and noisy), so every
comparison runs its baseline alongside. Earlier runs are kept in the history section.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import shapely

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "performance.md"
HISTORY_MARK = "## History"
LONG_MARK = "## Long run"
CONSOLE_MARK = "## Console: the live map under load"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, numpy "
            f"{np.__version__}, shapely {shapely.__version__} (GEOS {shapely.geos_version_string})")


def geofence_section(r: dict) -> tuple[str, str]:
    ok = r["identical"] and r["speedup"] >= 10 and r["grid_rate"] >= 5e6
    tree_row = (f"| shapely `STRtree.query(points, predicate=\"covered_by\")` incl. point "
                f"construction | {r['strtree_s']:.3f} s | {r['strtree_rate'] / 1e6:.2f} M | 1.0× |")
    grid_row = (f"| muckwatch `FenceIndex.covering(lon, lat)` | {r['grid_s']:.3f} s | "
                f"{r['grid_rate'] / 1e6:.2f} M | **{r['speedup']:.1f}×** |")
    table = f"""## Geofence core (issue #3)

{r['fixes']:,} fixes (half near fences, half uniform over the city) against {r['fences']:,}
fences ({r['vertices']:,} vertices; 16–200 per ring, 10% with holes, some multipolygons);
{r['pairs']:,} (fix, fence) containments. One core. Best of 3.

| | time | fixes/s | ratio |
|---|---:|---:|---:|
{tree_row}
{grid_row}

* identical (fix, fence) pairs: **{'yes' if r['identical'] else 'NO'}**
* targets (≥ 10× STRtree, ≥ 5 M fixes/s, identical): **{'met' if ok else 'NOT MET'}**
* index build: {r['build_s']:.1f} s (STRtree: {r['strtree_build_s'] * 1000:.0f} ms);
  index memory (numpy arrays, traced): {r['index_mb']:.0f} MB; grid {r['cells'][0]:,} ×
  {r['cells'][1]:,} cells of ≈ {r['cell_m']:.0f} m; {r['boundary_pairs']:,} boundary
  (cell, fence) pairs
"""
    summary = (f"geofence {r['grid_rate'] / 1e6:.2f} M fixes/s, {r['speedup']:.1f}× STRtree, "
               f"identical={r['identical']}, build {r['build_s']:.1f} s, {r['index_mb']:.0f} MB")
    return table, summary


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT MET**"


def pipeline_section(p: dict, state: dict, wire: dict, geo: dict, store: dict, rules: dict,
                     gw: dict) -> tuple[str, str]:
    row, hook = p["row_ms"], p["hook_ms"]
    ratio = p["ratio_to_paho"]
    lossless = p["stored"] == p["fixes"] and p["dead"] == 0
    targets = [
        ("pipeline ≥ 80% of the bare paho subscriber, zero loss",
         f"{p['pipeline_rate']:,.0f} vs {p['paho_rate']:,.0f} msg/s = **{ratio:.2f}**"
         f"{'' if lossless else ' (LOSS)'}", ratio >= 0.8 and lossless),
        ("p99 publish → violation row ≤ 50 ms at 5,000 msg/s", f"**{row['p99']:.0f} ms**",
         row["p99"] <= 50),
        ("p99 publish → webhook ≤ 100 ms at 5,000 msg/s", f"**{hook['p99']:.0f} ms**",
         hook["p99"] <= 100),
        ("store writer ≥ 70% of raw COPY", f"**{store['ratio']:.2f}**", store["ratio"] >= 0.7),
        ("geofence ≥ 10× shapely STRtree", f"**{geo['speedup']:.1f}×**", geo["speedup"] >= 10),
        ("100,000 vehicles of rule state ≤ 500 MB RSS",
         f"**{state['rss_after_mb']:.0f} MB** (state {state['state_mb']:.0f} MB)",
         state["rss_after_mb"] <= 500),
    ]
    target_rows = "\n".join(f"| {what} | {got} | {_verdict(ok)} |" for what, got, ok in targets)
    lasted = p.get("background_lasted_s")
    background_note = (
        f"The background load ran for the whole {p.get('probe_phase_s', 0):.0f} s probe phase."
        if lasted is None and "probe_phase_s" in p else
        f"**The background load ran out after {lasted:.0f} s of the "
        f"{p.get('probe_phase_s', 0):.0f} s probe phase**: later probes ran on an idle "
        "pipeline." if lasted is not None else "")
    text = f"""## The whole pipeline (issue #10)

| target (ratios in the same run) | measured | |
|---|---|---|
{target_rows}

### Ceilings and throughput

The same feed — {p['messages']:,} messages ({p['fixes']:,} fixes) of {p['trucks']:,} simulated
trucks reporting every second, one topic per truck, blind-area batches included — published
by a C publisher (`bench/cpub.c`, libmosquitto, QoS 1) into a private Mosquitto:

| receiver | messages/s | ratio to bare paho |
|---|---:|---:|
| `bench/csub.c` (C, libmosquitto, QoS 1, only counts; {p.get('csub_received', 0):,} of {p['messages']:,} received) | {p.get('csub_rate', float('nan')):,.0f} | {p.get('csub_rate', float('nan')) / p['paho_rate']:.2f} |
| `mosquitto_sub` (C), QoS 1 ({p.get('mosquitto_sub_received', 0):,} of {p['messages']:,} received) | {p['mosquitto_sub_rate']:,.0f} | {p['mosquitto_sub_rate'] / p['paho_rate']:.2f} |
| bare paho-mqtt subscriber (Python, QoS 1, nothing per message; {p.get('paho_received', 0):,} of {p['messages']:,} received) | {p['paho_rate']:,.0f} | 1.00 |
| muckwatch's own receiver (`ingest/receiver.py`), a consumer that only acks ({p.get('receiver_received', 0):,} of {p['messages']:,} received) | {p.get('receiver_rate', float('nan')):,.0f} | {p.get('receiver_rate', float('nan')) / p['paho_rate']:.2f} |
| **`muckwatch run`**: QoS 1, persistent session, validation, geofence against the city at scale 150 (≈ 10,000 fences), all rules, telemetry + violations written, alerts routed to the outbox and delivered | **{p['pipeline_rate']:,.0f}** | **{ratio:.2f}** |

The pipeline is at **{p['pipeline_rate'] / p.get('receiver_rate', float('nan')):.2f}** of
its own receiver's rate. The pipeline rate is messages ÷ the time from the first publish
until the last fix is in `telemetry`: {p['stored']:,} of {p['fixes']:,} fixes stored, {p['dead']} dead-lettered,
{p['violations']} violations, {p['alerts']} alerts, in {p['batches']} batches. The C
publisher alone reached {p['publish_rate']:,.0f} msg/s. (`mosquitto_pub -l` names a single
topic, and fed from a file at QoS 1 it delivered 3,121 of 50,000 lines here, so it cannot be
the ceiling's publisher.)

### Latency at a steady {p['background_rate']:,.0f} msg/s

{p['probes']} probe trucks' OVERSPEED bursts on top of {p['background_rate']:,.0f} msg/s of
background fleet (the C publisher, paced). Each is timed from publishing the message that
decides the violation (the fix that releases the opening fix from the 10 s reorder window;
docs/rules.md) to the row (a NOTIFY from a trigger the benchmark adds) and to the webhook at a
loopback receiver. The reorder window and the rule's debounce (15 s for OVERSPEED) come on
top by design; this is what the pipeline adds. {background_note}

| | p50 | p95 | p99 | max |
|---|---:|---:|---:|---:|
| publish → violation row | {row['p50']:.0f} ms | {row['p95']:.0f} ms | **{row['p99']:.0f} ms** | {row['max']:.0f} ms |
| publish → webhook received | {hook['p50']:.0f} ms | {hook['p95']:.0f} ms | **{hook['p99']:.0f} ms** | {hook['max']:.0f} ms |

Mean time per batch in that run: decode {p['latency_stage_ms_mean'].get('decode', 0):.1f} ms,
geofence {p['latency_stage_ms_mean'].get('geofence', 0):.1f} ms, rules
{p['latency_stage_ms_mean'].get('rules', 0):.1f} ms, store
{p['latency_stage_ms_mean'].get('store', 0):.1f} ms ({p['latency_batches']:,} batches; the
batch wait is 20 ms).

### Components

| | per second | baseline | ratio |
|---|---:|---:|---:|
| geofence core (10,000 fences) | {geo['grid_rate'] / 1e6:.2f} M fixes | shapely STRtree {geo['strtree_rate'] / 1e6:.2f} M | {geo['speedup']:.1f}× |
| store writer | {store['writer_rate']:,.0f} rows | raw binary COPY {store['raw_rate']:,.0f} | {store['ratio']:.2f} |
| rules engine (all rules, reorder window) | {rules['rate']:,.0f} fixes | | |
| wire decoding (topic, JSON, checks, columns) | {wire['decode_rate']:,.0f} messages | `orjson.loads` alone {wire['orjson_rate']:,.0f} | {wire['ratio']:.2f} |
| JT/T 808 0x0200 decode | {gw['decode_rate']:,.0f} frames | unescape + XOR only {gw['check_rate']:,.0f} | {gw['decode_rate'] / gw['check_rate']:.2f} |

### Memory: 100,000 vehicles of live rule state

{state['vehicles']:,} vehicles × 30 fixes 10 s apart through geofence and all rules (a fresh
process; {state['events']:,} events — the unregistered terminals drive loaded, so NO_PERMIT
opens for most of them, which keeps their machines live): resident memory
{state['rss_before_mb']:.0f} MB before the first fix, **{state['rss_after_mb']:.0f} MB**
after, so {state['state_mb']:.0f} MB of state ({state['per_vehicle_kb']:.1f} KB per vehicle),
with {state['held_fixes']:,} fixes held in the reorder window. `.venv/bin/python
bench/rule_state.py`.

The hand-over snapshot of that state (docs/scaling.md): {state['snapshot_us']:.0f} µs per
vehicle to export and serialise, {state['snapshot_bytes']:,.0f} bytes of JSON per vehicle,
{state['restore_us']:.0f} µs per vehicle to restore — a shutdown snapshot of all
{state['vehicles']:,} vehicles takes {state['snapshot_us'] * state['vehicles'] / 1e6:.1f} s of
CPU before the write.

### What the profiles showed, and what changed

py-spy on the running ingest (`MUCKWATCH_BENCH_PROFILE=1 .venv/bin/python bench/pipeline.py`,
summarised by `bench/profile_summary.py`):

1. **paho-mqtt's receive path** was 78% of all samples at 7,700 msg/s: for every PUBLISH an
   MQTT v5 `Properties` object and an `MQTTMessage`, on a network thread that fought the
   event loop for the GIL (≈ 110 µs per message). The ingest now speaks the little MQTT a
   subscriber needs itself (`ingest/receiver.py`: CONNECT, SUBSCRIBE, PUBLISH in, PUBACK out,
   PINGREQ, reconnect), cutting packets out of the socket buffer in `data_received` and
   acking a batch in one write: 7,700 → ≈ 40,000 msg/s, same guarantees.
2. **Rules, per batch**: a 10,000-entry fence-id dict rebuilt for every batch (now cached on
   the reference), and the reorder window re-sorting the held 10 s of the whole fleet by
   device *strings* every batch (now by interned ints): rules 79k → 155k fixes/s; at
   5,000 msg/s the rules stage went from 6.5 ms to 2.9 ms per batch.
3. **Latency tails of 0.5–1 s every 30 s**: the broker saving its persistence file
   (`autosave_interval 30`) with a large queue — here an old benchmark session nobody
   consumed, in production an ingest that is down. The benchmark removes stopped sessions;
   operators should watch the ingest's queue (docs/security.md on autosave).
4. **Batch wait** 200 → 20 ms (`ingest.batch_wait_ms`): p50 publish → row 160 → ≈ 30 ms;
   under load batches still fill to 5,000 (messages gather while the previous batch is
   processed), so throughput did not drop.
5. **Memory**: rule machines are created on first use and the state classes use slots. The
   first measurement (reports every second, so 1 M fixes held in the reorder window, and
   seven machines per vehicle) grew by 1,025 MB; now, reporting every 10 s (≈ one held fix
   per vehicle): {state['state_mb']:.0f} MB.
6. **Alerts**: the delivery worker is woken by the commit (in process; NOTIFY for workers
   elsewhere) instead of its 1 s poll.
"""  # noqa: E501 - markdown table rows
    c = p.get("cluster")
    if c:
        text += f"""
### The same pipeline through a 3-node RabbitMQ cluster (issue #25)

Same run, same feed: terminals (the C publisher) on node 2, `muckwatch run` holding a
persistent MQTT 3.1.1 session on node 1 with every node in `[mqtt] hosts`; every QoS 1
message is in a quorum queue on a majority of the three nodes before it is acknowledged
(docs/cluster.md). The three nodes share this machine's two cores with everything else.

| | one Mosquitto | 3-node RabbitMQ cluster |
|---|---:|---:|
| pipeline, msg/s | {p['pipeline_rate']:,.0f} | {c['pipeline_rate']:,.0f} |
| publish → violation row, p50 / p99 (ms) | {row['p50']:.0f} / {row['p99']:.0f} | {c['row_ms']['p50']:.0f} / {c['row_ms']['p99']:.0f} |
| probes that never arrived | {p['probes'] - p['rows_seen']} of {p['probes']} | {c['probes'] - c['rows_seen']} of {c['probes']} |
"""  # noqa: E501 - markdown table rows
    summary = (f"pipeline {p['pipeline_rate'] / 1e3:.1f}k msg/s = {ratio:.2f}× bare paho "
               f"({p['paho_rate'] / 1e3:.1f}k), p99 row {row['p99']:.0f} ms / webhook "
               f"{hook['p99']:.0f} ms at 5k msg/s, 100k vehicles {state['rss_after_mb']:.0f} MB")
    return text, summary


def passed_section(r: dict) -> tuple[str, str]:
    small, big = r["stages"][0], r["stages"][-1]
    ok = all(st["p95"] < 1000 and st["max"] < 1000 for st in r["stages"])
    rows = "\n".join(
        f"| {st['trucks']:,} | {st['rows'] / 1e6:.1f} M | {st['p50']:.0f} ms | {st['p95']:.0f} ms"
        f" | {st['max']:.0f} ms | {st['trucks_p50']:.0f} ({st['loaded_p50']:.0f}) | "
        + " / ".join(f"{t:,.0f}" for t in st["brin_only_ms"]) + " ms | "
        f"{st['heap_mb']:,.0f} / {st['pkey_mb']:,.0f} / {st['cell_index_mb']:,.0f} MB |"
        for st in r["stages"])
    runs = r["writer_runs"]
    week_gb = 7 * (big["heap_mb"] + big["pkey_mb"] + big["cell_index_mb"]) / 1024
    touched = re.search(r"shared hit=(\d+)(?: read=(\d+))?", r["explain"])
    buffers = int(touched.group(1)) + int(touched.group(2) or 0) if touched else 0
    text = f"""
## Who passed here (issue #21)

`store.passed.who_passed` as the API's `GET /v1/passed` calls it (loaded or unknown-load
trucks, limit 50, each with its pass, company and ±5 min track): a random point on a road, a
random 1 h window, radius 200 m; {small['queries']} queries per size, one client, same run.
The synthetic city (bench/passed_here.py): 40 × 40 km of roads every kilometre, 20,000
trucks on one 10 h shift a day (70% at night) at 30–40 km/h reporting every 30 s, parked
otherwise reporting every 10 min (≈ 1,370 fixes per truck and day). Both sizes hold one day
at the density of the 20,000-truck city (the 2,000 trucks drive its first tenth), so only the
table grows:

| trucks in the table | rows | p50 | p95 | max | trucks returned p50 (loaded) | same query without the cell index (BRIN + primary key) | heap / primary key / cell index |
|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

Target < 1 s: **{'met' if ok else 'NOT MET'}**. The index is read as one range per 0.01°
grid cell for the window (4–9 cells for 200 m plus the 500 m margin that finds crossings
between fixes), so a query reads the fixes near the place in that hour — about the same
number at both sizes — then two primary-key probes per fix within 700 m, and the tracks. For
{big['rows'] / small['rows']:.0f} times the rows the p50 went from {small['p50']:.0f} to
{big['p50']:.0f} ms: the small table mostly sits in PostgreSQL's 256 MB of shared buffers, the
large one is read through the OS page cache; the work per query is the same. Without the cell index the same query reads the whole
hour of the city through BRIN(ts): {sum(small['brin_only_ms']) / len(small['brin_only_ms']):,.0f}
→ {sum(big['brin_only_ms']) / len(big['brin_only_ms']):,.0f} ms, growing with the fleet.

A week of the 20,000-truck city (≈ 7 × {big['rows'] / 1e6:.1f} M = {7 * big['rows'] / 1e6:.0f}
M rows, ≈ {week_gb:.0f} GB of heap and these two indexes) is not measured here. The query
reads the same ranges of a btree at most one level deeper, so with the recent data in memory
the latency is the one above. What a week changes is the cache: it no longer all fits, and a
query's fixes lie on about as many heap pages as fixes (rows are stored in arrival order) —
the plan below touched {buffers:,} buffers. A query on days nobody read lately pays those as
random reads: on SSD a few hundred ms to ~2 s, so the second is met on warm data, not
guaranteed cold. Windows up to 24 h and radii up to 5 km are allowed and cost in proportion
to the fixes they cover; more than 300,000 near fixes are refused with a message to narrow
the query. With TimescaleDB, chunks compressed after 7 days have no cell index and are
searched by time only.

The plan of one query's index read on the largest table (the index scan, then the fix
before and after each fix within 700 m through the primary key):

```
{r['explain']}
```

**What the index costs the writer.** The pipeline's writer (`Store.write`, batches of 5,000
fixes of this city's evening traffic, {r['writer_fixes']:,} fixes into an empty `telemetry`,
default durability, same cluster, runs alternating, best of three):
**{r['writer_without']:,.0f} rows/s without the cell index, {r['writer_with']:,.0f} with it
= {r['writer_ratio']:.2f}×** (runs without: {', '.join(f'{x:,}' for x in runs['without'])};
with: {', '.join(f'{x:,}' for x in runs['with'])}). In a bulk COPY of a day the index costs
more (building it afterwards is how bench/passed_here.py loads). The "store writer ≥ 70% of
raw COPY" target above compares with a copy of `telemetry` that has all its indexes, so the
cell index is on both sides of that ratio. `.venv/bin/python bench/passed_here.py`.
"""  # noqa: E501 - markdown table rows
    summary = (f"who passed here p95 {big['p95']:.0f} ms at {big['rows'] / 1e6:.1f} M rows, "
               f"{small['p95']:.0f} ms at {small['rows'] / 1e6:.1f} M; cell index writer "
               f"{r['writer_ratio']:.2f}×")
    return text, summary


def main() -> int:
    sys.path.insert(0, str(REPO / "bench"))
    import gateway_load
    import geofence_core
    import json_decode
    import passed_here
    import pipeline
    import plain_layout
    import rule_state
    import rules_engine
    import simulator_mqtt
    import store_writer

    print("whole pipeline: ceilings, throughput, latency …", flush=True)
    pipe = pipeline.run()
    print("rule state of 100,000 vehicles …", flush=True)
    state = rule_state.run()
    print("wire decoding …", flush=True)
    wire = json_decode.run()

    print("geofence core …", flush=True)
    geo = geofence_core.run()
    geo_text, geo_summary = geofence_section(geo)
    print(geo_summary, flush=True)
    print("rules engine …", flush=True)
    rules = rules_engine.run()
    rules_summary = f"rules {rules['rate'] / 1e3:.0f}k fixes/s"
    print(rules_summary, flush=True)
    print("store writer …", flush=True)
    store = store_writer.run()
    store_summary = (f"writer {store['writer_rate'] / 1e3:.0f}k rows/s = "
                     f"{store['ratio'] * 100:.0f}% of raw COPY")
    print(store_summary, flush=True)
    raw_k, writer_k = store["raw_rate"] / 1e3, store["writer_rate"] / 1e3
    again_k = store["redelivery_rate"] / 1e3
    dup_k = store["dup_rate"] / 1e3
    store_rows = "\n".join([
        f"| raw binary COPY of the writer's own buffers (built before the clock) into a copy "
        f"of `telemetry` | {raw_k:.0f}k | 1.00 |",
        f"| muckwatch writer (dedupe on device + ts, a transaction per batch) | {writer_k:.0f}k"
        f" | **{store['ratio']:.2f}** |",
        f"| muckwatch writer, 0.5 % of each batch repeated from the one before | {dup_k:.0f}k"
        f" | {dup_k / raw_k:.2f} |",
        f"| muckwatch writer, a redelivered batch (all duplicates) | {again_k:.0f}k | "
        f"{again_k / raw_k:.2f} |",
    ])
    print("plain PostgreSQL layout …", flush=True)
    lay = plain_layout.run()
    layout_rows = "\n".join(
        f"| {label} | {lay[t + '_copy_rate'] / 1e3:.0f}k | {lay[t + '_hour_s'] * 1000:.1f} ms "
        f"| {lay[t + '_track_s'] * 1000:.1f} ms | {lay[t + '_mb']:.0f} MB |"
        for t, label in (("t_brin", "one table, PK (device_id, ts) + BRIN(ts)"),
                         ("t_part", "daily partitions, PK per partition")))
    geo_text += f"""
## Plain PostgreSQL layout: BRIN vs daily partitions (issue #5)

{lay['rows']:,} fixes of {lay['devices']:,} devices over {lay['days']} days, COPY then
VACUUM ANALYZE, best of 5 per query, same run:

| | COPY rows/s | one hour, all devices | one device's day | size |
|---|---:|---:|---:|---:|
{layout_rows}

The embedded default keeps **one table with BRIN**: the one-hour window over all devices is
several times faster through the BRIN index than through a day's partition, tracks and size
are the same, and there is no partition upkeep (tomorrow's partition, a default partition for
very late backfill). COPY rates differ by less than this machine's run-to-run noise (190–285k
rows/s for either layout over three runs). A deployment that outgrows one table should run
TimescaleDB, which partitions by itself and compresses. `.venv/bin/python
bench/plain_layout.py`.
"""
    geo_text += f"""
## Store writer (issue #5)

{store['fixes']:,} fixes in batches of {store['batch']:,} from 20,000 devices into a private
PostgreSQL (default durability settings), same run:

| | rows/s | ratio |
|---|---:|---:|
{store_rows}

Target ≥ 0.70 of raw COPY: **{'met' if store['ratio'] >= 0.7 else 'NOT MET'}**. New batches go
in with one numpy-built binary COPY straight into `telemetry` inside a savepoint; a batch
holding an already-stored fix is rolled back to the savepoint and goes through a staging
table and `INSERT … ON CONFLICT DO NOTHING`. `.venv/bin/python bench/store_writer.py`.

## Rules engine (issue #4)

{rules['fixes']:,} fixes of {rules['trucks']} simulated trucks over the sample city, one batch
per second of device time, all seven rules, trips and the reorder window on (geofence outside
the timing): **{rules['rate'] / 1e3:.0f}k fixes/s** on one core ({rules['events']} events).
Per-fix facts, GNSS gating, trip state and rule conditions are numpy over the whole batch;
Python runs only where a vehicle's state changes (a debounce machine that is active or sees
an offending fix, a trip transition, a jump, a gap). `.venv/bin/python bench/rules_engine.py`.
"""

    print("who passed here …", flush=True)
    passed_text, passed_summary = passed_section(passed_here.run())
    print(passed_summary, flush=True)
    geo_text += passed_text

    print("simulator over MQTT …", flush=True)
    sim = simulator_mqtt.run()
    sim_ok = sim["publish_rate"] >= sim["needed_rate"] and sim["realtime_lag_s"] < 2 \
        and sim["realtime_received"] == sim["realtime_messages"]
    sim_summary = (f"simulator {sim['publish_rate'] / 1e3:.1f}k msg/s "
                   f"({sim['publish_rate'] / sim['needed_rate']:.1f}× a 20k-truck fleet), "
                   f"real-time lag {sim['realtime_lag_s']:.2f} s")
    print(sim_summary, flush=True)
    need = sim["needed_rate"]
    sim_rows = "\n".join([
        f"| fleet model + scenario only (no publishing) | {sim['generate_rate']:,.0f} | "
        f"{sim['generate_rate'] / need:.1f}× |",
        f"| published as fast as the broker acknowledges ({sim['messages']:,} messages, "
        f"2 simulated min) | {sim['publish_rate']:,.0f} | "
        f"**{sim['publish_rate'] / need:.1f}×** |",
    ])
    geo_text += f"""
## Simulator: 20,000 trucks from one process (issue #6)

{sim['trucks']:,} compliant trucks reporting every {sim['interval_s']:g} s need
{sim['needed_rate']:,.0f} messages/s. One `muckwatch simulate` process, one paho client, QoS 1,
a private Mosquitto with a QoS 1 subscriber counting deliveries, same run:

| | messages/s | ratio to the fleet's need |
|---|---:|---:|
{sim_rows}

Real time (`--speed 1 --start-ms now`, one minute, {sim['realtime_messages']:,} messages, all
{sim['realtime_received']:,} received): fell behind its schedule by at most
**{sim['realtime_lag_s']:.2f} s**, using {sim['realtime_cpu_share'] * 100:.0f} % of one core
(start-up included). Target (publishes ≥ the need, keeps pace within 2 s, nothing lost):
**{'met' if sim_ok else 'NOT MET'}**. The city is the synthetic generator at scale 150
(cached in `.run/bench/`). `.venv/bin/python bench/simulator_mqtt.py`.
"""

    print("JT/T 808 decode and gateway …", flush=True)
    gw = gateway_load.run()
    gw_ok = gw["decode_rate"] >= 50_000 and gw["gateway_rate"] >= 10_000
    gw_summary = (f"jt808 decode {gw['decode_rate'] / 1e3:.0f}k frames/s, gateway "
                  f"{gw['gateway_rate'] / 1e3:.1f}k reports/s from {gw['connections']} "
                  "connections")
    print(gw_summary, flush=True)
    gw_rows = "\n".join([
        f"| unescape + XOR check only (baseline) | {gw['check_rate']:,.0f} frames | |",
        f"| decode 0x0200 (frame, header, location, two extra items) | "
        f"**{gw['decode_rate']:,.0f}** frames | ≥ 50,000 |",
        f"| `muckwatch gateway`: {gw['connections']:,} TCP connections, bursts of 10 reports,"
        f" each answered after the broker's PUBACK | **{gw['gateway_rate']:,.0f}** reports |"
        " ≥ 10,000 |",
    ])
    geo_text += f"""
## JT/T 808 gateway (issue #8)

Same run, one core each:

| | per second | target |
|---|---:|---:|
{gw_rows}

The gateway process used {gw['gateway_cpu_share'] * 100:.0f} % of one core; the load
generator (1,000 asyncio clients) and Mosquitto shared the other. Targets:
**{'met' if gw_ok else 'NOT MET'}**. What made the difference: paho on the event loop (its
socket registered with `add_reader`/`add_writer`) instead of its network thread (≈ 2,000
reports/s from GIL ping-pong per message), and no paho in-flight window (paho rescans every
queued message on each PUBACK: quadratic under load). `.venv/bin/python bench/gateway_load.py`.
"""

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=REPO).stdout.strip() or "uncommitted"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    history = []
    if DOC.exists():
        old = DOC.read_text(encoding="utf-8")
        if HISTORY_MARK in old:
            history = [line for line in old.split(HISTORY_MARK, 1)[1].splitlines()
                       if line.startswith("- ")]
    pipe_text, pipe_summary = pipeline_section(pipe, state, wire, geo, store, rules, gw)
    print(pipe_summary, flush=True)
    history.insert(0, f"- {stamp} ({commit}): {pipe_summary}; {geo_summary}; "
                      f"{rules_summary}; {store_summary}; {passed_summary}; {sim_summary}; "
                      f"{gw_summary}")
    long_run = ""
    if DOC.exists() and LONG_MARK in (old := DOC.read_text(encoding="utf-8")):
        rest = old.split(LONG_MARK, 1)[1]
        long_run = LONG_MARK + rest[:rest.find("\n## ") + 1 if "\n## " in rest else len(rest)]
    else:
        long_run = f"{LONG_MARK} (`make bench-long`)\n\nNot run on this machine yet.\n"
    console = ""  # written by `make bench-console` (bench/console_load.py), kept here
    if DOC.exists() and CONSOLE_MARK in (old := DOC.read_text(encoding="utf-8")):
        rest = old.split(CONSOLE_MARK, 1)[1]
        console = CONSOLE_MARK + rest[:rest.find("\n## ") + 1 if "\n## " in rest else len(rest)]

    DOC.write_text(f"""# Performance

Measured by `make bench` (bench/run.py) on: {machine()}.
Last run {stamp} at commit {commit}. The machine is shared and noisy, so targets are **ratios
against a baseline measured in the same run**; absolute rates vary by ±30% between runs.

Reproduce: `make bench` (10–30 minutes, as fast and as loaded as the machine is; writes this file).
Single benchmark: `.venv/bin/python bench/pipeline.py` (or any file in bench/).
`make bench-long` adds the ten-minute megacity run below.

{pipe_text}
{long_run.rstrip()}

{console.rstrip()}

{geo_text}
### How the geofence core gets there

* a uniform grid over the fences (cell ≈ 1/32 of the median fence size, at most 16 M cells),
  every cell pre-classified per fence at build time: *inside* (the closed cell touches no
  boundary, so its centre's status holds for all of it; found by scanline parity),
  *boundary* (the cell's edges are kept), or absent;
* a fix in an inside cell is a member by two array lookups; a fix in a boundary cell is
  decided by the parity of crossings between the segment fix → reference point (a point of
  the cell with known status) and the few edges of that cell — numpy over all (fix, edge)
  pairs of the batch; orientation signs come with a forward error bound, and any pair the
  bound cannot decide goes to GEOS `intersects_xy`, so the answer is exactly `covers()`;
* batches are processed in chunks of 32k fixes: fresh 40 MB temporaries cost more in page
  faults on this VM than the arithmetic.

{HISTORY_MARK}

""" + "\n".join(re.sub(r"\s+$", "", h) for h in history) + "\n", encoding="utf-8")
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0 if geo["identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
