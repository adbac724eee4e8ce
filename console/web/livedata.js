// The live picture of the fleet, kept from the snapshot and the deltas of /v1/live/stream.
// No DOM and no map here: live.js decides when to draw it.

export const STATES = ['moving_loaded', 'moving_empty', 'stopped', 'offline', 'violation'];

export const STATE_COLOURS = {
  moving_loaded: '#d97706',
  moving_empty: '#2563eb',
  stopped: '#6b7280',
  offline: '#c4c4c4',
  violation: '#dc2626',
};

export class Fleet {
  constructor({ offlineAfterS, stoppedBelowKmh }) {
    this.offlineAfterMs = offlineAfterS * 1000;
    this.stoppedBelowKmh = stoppedBelowKmh;
    this.trucks = new Map(); // device_id → truck record
    this.removed = [];       // feature ids of trucks a new snapshot no longer has
    this.violating = {};
    this.offline = new Set();
    this.skewMs = 0;         // server clock − browser clock, from the events' `now`
    this.serverNow = null;
    this.nextId = 1;         // numeric feature ids, stable for a device while the page lives
  }

  now() {
    return Date.now() + this.skewMs;
  }

  #clock(now) {
    if (typeof now === 'number') {
      this.serverNow = now;
      this.skewMs = now - Date.now();
    }
  }

  snapshot({ columns, rows, violating, offline, now }) {
    this.columns = columns;
    const seen = new Set();
    for (const row of rows) seen.add(this.#apply(row).device_id);
    for (const [device, truck] of this.trucks) {
      if (!seen.has(device)) {
        this.trucks.delete(device);
        this.removed.push(truck.id);
      }
    }
    this.violating = violating || {};
    this.offline = new Set(offline || []);
    this.#clock(now);
  }

  positions({ rows, now }) {
    for (const row of rows) this.#apply(row);
    this.#clock(now);
  }

  setViolating(violating) {
    this.violating = violating || {};
  }

  setOffline(offline) {
    this.offline = new Set(offline || []);
  }

  #apply(row) {
    const record = {};
    this.columns.forEach((name, i) => { record[name] = row[i]; });
    let truck = this.trucks.get(record.device_id);
    if (!truck) {
      truck = { id: this.nextId++, shown: null };
      this.trucks.set(record.device_id, truck);
    }
    Object.assign(truck, record);
    truck.dirty = true;
    return truck;
  }

  // The contract's order: offline, then in violation, then stopped, then loaded or empty.
  stateOf(truck, now = this.now()) {
    if (this.offline.has(truck.device_id) || now - truck.ts > this.offlineAfterMs) return 'offline';
    if (this.violating[truck.device_id]?.length) return 'violation';
    if (truck.speed_kmh === null || truck.speed_kmh < this.stoppedBelowKmh) return 'stopped';
    return truck.load >= 1 ? 'moving_loaded' : 'moving_empty';
  }

  byPlate(plate) {
    for (const truck of this.trucks.values()) if (truck.plate === plate) return truck;
    return null;
  }
}
