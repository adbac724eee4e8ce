// The API on the same origin: JSON with the bearer token, and the live event stream.

const TOKEN_KEY = 'muckwatch.token';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

// FastAPI answers {detail: "text"} or {detail: [{loc, msg}, ...]} for bad fields.
async function errorOf(response) {
  let text = response.statusText || `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (typeof body.detail === 'string') text = body.detail;
    else if (Array.isArray(body.detail)) {
      text = body.detail.map(d => `${(d.loc || []).slice(1).join('.')}: ${d.msg}`).join('; ');
    }
  } catch { /* not JSON: keep the status text */ }
  return new ApiError(response.status, text);
}

function url(path, params) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
  }
  return u;
}

export async function get(path, params, { signal } = {}) {
  const response = await fetch(url(path, params), { headers: headers(), signal });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

// The body as a Blob (a photo): an <img src> cannot send the bearer token, so the bytes come
// through here and are shown through URL.createObjectURL.
export async function getBlob(path, { signal } = {}) {
  const response = await fetch(url(path), { headers: headers(), signal });
  if (!response.ok) throw await errorOf(response);
  return response.blob();
}

export async function post(path, body) {
  const response = await fetch(url(path), {
    method: 'POST',
    headers: headers({ 'Content-Type': 'application/json' }),
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

// Splits a text/event-stream into events; feed it chunks, it calls onEvent(name, data)
// for each complete event (comments such as ": keepalive" only count as life signs).
export function eventParser(onEvent) {
  let buffer = '';
  let name = 'message';
  let data = [];
  return chunk => {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, '');
      buffer = buffer.slice(end + 1);
      if (line === '') {
        if (data.length) onEvent(name, data.join('\n'));
        name = 'message';
        data = [];
      } else if (line.startsWith('event:')) {
        name = line.slice(6).trim();
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
    }
  };
}

// EventSource cannot send the Authorization header, so the stream is read with fetch.
// Reconnects with backoff (1 s doubling to 30 s) until `signal` aborts; a stream silent for
// longer than three keepalive periods is treated as dead. onStatus gets 'open', 'retry' or
// an ApiError the stream cannot recover from (401/403: no retry).
export function stream(path, { onEvent, onStatus, signal }) {
  const SILENCE_MS = 45_000;
  let delay = 1000;

  async function connectOnce() {
    const local = new AbortController();
    const abort = () => local.abort();
    signal.addEventListener('abort', abort);
    let watchdog = setTimeout(abort, SILENCE_MS);
    try {
      const response = await fetch(url(path), {
        headers: headers({ Accept: 'text/event-stream' }), signal: local.signal, cache: 'no-store',
      });
      if (!response.ok) throw await errorOf(response);
      const parse = eventParser((name, data) => {
        if (name === 'snapshot') delay = 1000;
        onEvent(name, JSON.parse(data));
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      onStatus?.('open');
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        clearTimeout(watchdog);
        watchdog = setTimeout(abort, SILENCE_MS);
        parse(value);
      }
    } finally {
      clearTimeout(watchdog);
      signal.removeEventListener('abort', abort);
    }
  }

  (async () => {
    while (!signal.aborted) {
      try {
        await connectOnce();
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          onStatus?.(err);
          return;
        }
      }
      if (signal.aborted) return;
      onStatus?.('retry');
      await new Promise(resolve => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30_000);
    }
  })();
}
