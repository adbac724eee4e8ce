"""The settings dataclasses: one per section of the config file, every knob with its default
(loading, overrides and validation: ``domain.config``).

Rule thresholds (the [rules] section): Defaults and the reason for each
are in docs/rules.md; every key can be overridden (MUCKWATCH_RULES_<KEY>).

Every rule debounces both ways: ``*_open_s``/``*_open_fixes`` to open, ``*_close_s``/
``*_close_fixes`` back to normal to close (and to abandon a run that has not opened yet)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class RuleSettings:
    # time and quality
    reorder_window_s: float = 10.0  # fixes this close in device time are put in order
    min_sats: int = 4  # fewer satellites: the fix is "unknown"
    max_hdop: float = 5.0  # worse HDOP: "unknown"
    max_implied_kmh: float = 150.0  # faster than this from the last good fix: a jump
    moving_kmh: float = 5.0  # above this a truck is moving, below it "stationary-ish"
    evidence_s: float = 120.0  # evidence track: this long before the start and after the end
    evidence_max_fixes: int = 600
    # sites, legs and trips
    site_exit_s: float = 30.0  # outside a site this long (known fixes, having moved) …
    site_exit_fixes: int = 2  # … and this many fixes before the truck has left it
    site_enter_fixes: int = 2  # known fixes inside before it has arrived
    leg_grace_s: float = 3600.0  # a lapsing permit covers its leg until this long after departure
    # OFF_ROUTE
    off_route_open_s: float = 60.0
    off_route_open_fixes: int = 3
    off_route_close_s: float = 30.0
    off_route_close_fixes: int = 3
    off_route_close_ratio: float = 0.8  # back inside this fraction of the half-width to close
    # UNAUTHORISED_DUMP
    dump_open_s: float = 10.0
    dump_open_fixes: int = 2
    dump_close_s: float = 10.0
    dump_close_fixes: int = 2
    dump_load_drop: float = 0.3  # a load falling by this fraction …
    dump_load_window_s: float = 300.0  # … within this long counts as dumping without a lift
    dump_load_fixes: int = 3  # … held for this many reports while stationary
    # UNCOVERED_LOAD
    uncovered_open_s: float = 30.0
    uncovered_open_fixes: int = 3
    uncovered_close_s: float = 10.0
    uncovered_close_fixes: int = 2
    # RESTRICTED_ZONE
    restricted_open_s: float = 20.0
    restricted_open_fixes: int = 2
    restricted_close_s: float = 10.0
    restricted_close_fixes: int = 2
    # NO_PERMIT
    no_permit_open_s: float = 120.0
    no_permit_open_fixes: int = 3
    no_permit_close_s: float = 30.0
    no_permit_close_fixes: int = 2
    # OVERSPEED
    speed_limit_kmh: float = 60.0  # muck-truck limit where no zone sets one
    overspeed_open_s: float = 15.0
    overspeed_open_fixes: int = 3
    overspeed_close_s: float = 10.0
    overspeed_close_fixes: int = 2
    overspeed_grave_kmh: float = 20.0  # severity 2 when the peak is this far over the limit
    # SIGNAL_LOSS
    signal_loss_s: float = 300.0
    # WRONG_DESTINATION: tipping in an open disposal site or dock the leg's permits do not
    # name (debounced like UNAUTHORISED_DUMP: dump_open_s / dump_open_fixes …)
    # TRIP_NOT_CLOSED: a loaded leg that reached none of its destinations this long after it
    # left its origin
    trip_close_s: float = 7200.0
    trip_open_fixes: int = 2  # fixes past the deadline before it opens
    # OVERLOAD: weighed load above rated load × (1 + tolerance), while moving
    overload_tolerance: float = 0.1  # the load sensor's error and the road's bumps
    overload_open_s: float = 60.0
    overload_open_fixes: int = 3
    overload_close_s: float = 30.0
    overload_close_fixes: int = 3
    overload_grave_ratio: float = 0.5  # severity 3 when the peak is this far over rated load
    # TERMINAL_TAMPER: GNSS fault / antenna cut / power cut alarm while not standing still
    tamper_open_s: float = 30.0
    tamper_open_fixes: int = 3
    tamper_close_s: float = 30.0
    tamper_close_fixes: int = 3
    # the manifest's estimated volume of a load: weighed kg / density, else the vehicle's
    # rated volume (half of it for a "half" load level)
    spoil_density_kg_m3: float = 1800.0


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "muckwatch-ingest"
    username: str = ""
    password: str = ""
    topic_root: str = "muck/v1"
    keepalive_s: int = 30
    # persistent session: the broker keeps our QoS 1 queue this long while we are away
    session_expiry_s: int = 86_400
    # in-flight window; must exceed ingest.batch_max because acks wait for the commit
    receive_maximum: int = 65_535
    # topic partitions P: publishers use muck/v1/p/{k}/{device}/… with k = CRC-32(device) mod
    # P, each worker consumes [ingest] partitions (docs/scaling.md); 0 = no partition level
    partitions: int = 0
    # EMQX shared subscription: subscribe as $share/{group}/… and let the broker's hash
    # strategy spread vehicles over the workers of the group; empty = not shared
    share_group: str = ""
    # a clustered broker (docs/scaling.md): every node's host:port, comma-separated; the
    # ingest, the gateway and the dispatcher connect to the first that answers and move to
    # the next when theirs goes away. "" = host:port above
    hosts: str = ""
    # "5" (Mosquitto, EMQX) or "3.1.1" (brokers without MQTT 5: RabbitMQ's MQTT plugin, NATS:
    # a persistent session is then clean_session = 0 and lives until unsubscribed)
    protocol: str = "5"

    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every node to try, in order."""
        if not self.hosts.strip():
            return [(self.host, self.port)]
        out = []
        for item in self.hosts.split(","):
            host, _, port = item.strip().rpartition(":")
            out.append((host.strip("[]") or "127.0.0.1", int(port)))
        return out


@dataclass(frozen=True)
class DatabaseSettings:
    dsn: str = "postgresql://postgres@127.0.0.1:5432/muckwatch"
    connect_timeout_s: int = 10


@dataclass(frozen=True)
class IngestSettings:
    batch_max: int = 5_000  # messages per batch
    batch_wait_ms: int = 20  # flush a partial batch after this long (latency ≤ this + work)
    max_payload_bytes: int = 65_536
    # payload bytes buffered per broker session before it stops reading (photos are
    # megabytes): the broker keeps the rest until the pipeline took what is here
    max_buffer_bytes: int = 268_435_456
    max_future_s: int = 600  # device clocks may run ahead by this much
    retry_backoff_max_s: float = 30.0  # database unavailable: retry the batch, capped backoff
    # the topic partitions this worker consumes, e.g. "0-7" or "0,2,4"; empty = all of them
    partitions: str = ""
    # rule state of the vehicles that changed is saved this often (and on shutdown), for the
    # worker that takes them over after a crash or a rebalance
    snapshot_s: float = 60.0
    # with [mqtt] share_group: a vehicle silent here this long is re-read from the database
    # when it reappears (the broker may have given it to another worker meanwhile)
    reclaim_after_s: float = 10.0


@dataclass(frozen=True)
class CitySettings:
    dir: str = "data/sample-city"


@dataclass(frozen=True)
class AlertSettings:
    worker: bool = True  # run the webhook delivery worker inside ``muckwatch run``
    timeout_s: float = 15.0  # one delivery attempt
    # delay before attempt 1, 2, …: after the last one fails the alert is dead-lettered
    retry_schedule_s: str = "0,5,300,1800,7200,18000,36000,36000"
    jitter: float = 0.1  # each retry delay ± this share, so receivers are not hit in step
    max_in_flight: int = 4  # concurrent deliveries per subscription
    poll_s: float = 1.0  # how often the worker looks for due alerts
    lease_s: float = 60.0  # a claimed alert is tried again after this if its worker died
    reload_s: float = 30.0  # the ingest re-reads subscriptions from the table this often
    evidence_url: str = ""  # link for receivers, e.g. https://…/violations/{id}
    subscriptions: tuple = ()  # [[alerts.subscriptions]] tables, synced into the table


@dataclass(frozen=True)
class GatewaySettings:
    listen: str = "127.0.0.1:6808"  # JT/T 808 terminals connect here (host:port)
    client_id: str = "muckwatch-gateway"  # its MQTT client id (broker: the [mqtt] section)
    idle_timeout_s: float = 180.0  # no frame for this long: the connection is closed
    max_frame_bytes: int = 4096  # larger frames are dropped (and counted)
    max_buffer_bytes: int = 65_536  # more unparsed bytes than this: the connection is closed
    publish_timeout_s: float = 10.0  # broker acks slower than this: the terminal gets 'fail'
    auth_secret: str = ""  # keys the auth codes; empty: a random one per start
    allow_unknown: bool = True  # terminals not in devices_file register as their phone
    devices_file: str = ""  # CSV phone,device_id[,model]
    lid: str = ""  # default lid source, e.g. "io:8" (docs/jt808.md); empty: not reported
    lift: str = ""  # default lift source
    models: tuple = ()  # [[gateway.models]] model = "…", lid = "…", lift = "…"
    # multimedia uploads (0x0801) in progress: a terminal's missing packages are asked for
    # again (0x8800) after this long without a new one, at most media_resend_tries times;
    # then the item is dropped and counted. At most media_max_pending items per connection
    # and media_max_bytes bytes in progress over the whole gateway (the oldest goes first)
    media_resend_after_s: float = 10.0
    media_resend_tries: int = 3
    media_max_pending: int = 4
    media_max_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class MediaSettings:
    # photos from terminals (docs/jt808.md): stored once per SHA-256 in a local directory,
    # or in an S3-compatible object store when s3_bucket is set
    dir: str = ".run/media"
    max_bytes: int = 4 * 1024 * 1024  # one item; larger ones are dead-lettered
    s3_endpoint: str = ""  # e.g. http://127.0.0.1:9000; "" = the AWS default for s3_region
    s3_bucket: str = ""  # "" = the local directory
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""  # masked when settings are printed
    s3_prefix: str = "media/"


@dataclass(frozen=True)
class TerminalSettings:
    # commands to terminals (docs/jt808.md): queued in terminal_commands, published by the
    # dispatcher inside ``muckwatch run`` (several workers may run it: rows are claimed)
    dispatcher: bool = True
    poll_s: float = 1.0  # how often the dispatcher looks for queued commands and timeouts
    command_timeout_s: float = 60.0  # no answer from the terminal by then: 'timeout'
    # [[terminal.on_violation]] rule = "OFF_ROUTE", text = "…", capture_channel = 1:
    # what to tell the driver (0x8300) and which camera to fire (0x8801) when one opens;
    # by default a driver who leaves the permit's route is told so at once
    on_violation: tuple = ({"rule": "OFF_ROUTE",
                            "text": "{plate}：您已偏离核准路线，请立即返回核准路线行驶"},)


@dataclass(frozen=True)
class ScoringSettings:
    # credit-score deduction points per violation, by rule: severity 1/2/3. Written into the
    # score_deductions table by `muckwatch db migrate` and `muckwatch scores`
    deductions: str = ("UNAUTHORISED_DUMP=10/15/20, NO_PERMIT=6/8/10, OFF_ROUTE=3/5/8, "
                       "RESTRICTED_ZONE=3/5/8, UNCOVERED_LOAD=2/4/6, SIGNAL_LOSS=2/4/6, "
                       "OVERSPEED=1/2/4, WRONG_DESTINATION=4/6/8, TRIP_NOT_CLOSED=4/6/10, "
                       "OVERLOAD=2/4/6, PERMIT_VOLUME_EXCEEDED=3/5/8, TERMINAL_TAMPER=3/5/8")
    # a violation nobody reviewed counts in the score this many days after it started
    # (confirmed ones count at once, dismissed ones never); written into score_policy
    unreviewed_after_days: int = 7


@dataclass(frozen=True)
class ApiSettings:
    listen: str = "127.0.0.1:8088"  # muckwatch serve: the HTTP API (docs/api.md)
    uploads_dir: str = ".run/uploads"  # appeal attachments, one file per SHA-256
    max_upload_bytes: int = 5_242_880  # per attachment (5 MiB)
    max_attachments: int = 5  # per appeal
    webhook_secret: str = ""  # whsec_… for inbound case updates; "": that endpoint is off
    pool_size: int = 8  # database connections of the API process


@dataclass(frozen=True)
class PermitSettings:
    # checked when an officer approves a permit application (docs/permits.md)
    corridor_min_m: float = 20.0  # narrower corridors flag a truck a lane off its route
    corridor_max_m: float = 500.0  # wider ones no longer say which road the truck must take
    max_validity_days: int = 366  # valid_to − valid_from at most this many days


@dataclass(frozen=True)
class ObservabilitySettings:
    listen: str = "127.0.0.1:9108"  # muckwatch run serves /metrics and /healthz here; "" = off
    log_format: str = "text"  # "json": one JSON object per log line, for log shippers


@dataclass(frozen=True)
class Settings:
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    city: CitySettings = field(default_factory=CitySettings)
    rules: RuleSettings = field(default_factory=RuleSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    permits: PermitSettings = field(default_factory=PermitSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    terminal: TerminalSettings = field(default_factory=TerminalSettings)

    def with_overrides(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some keys replaced, e.g. ``with_overrides(mqtt={"port": 1884})``."""
        changed = {}
        for name, values in sections.items():
            changed[name] = replace(getattr(self, name), **values)
        return replace(self, **changed)
