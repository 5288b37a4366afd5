// node-http entry program: an HTTP server on $http_port (else the port of upstream_url, else
// 3000) that calls function/handler.js for each request with (event, context). Node's own http
// module only; the handler's dependencies live in function/node_modules.
'use strict';

const http = require('http');
const handler = require('./function/handler');

const maxBody = Number(process.env.max_body_bytes || 16 * 1024 * 1024);

function port() {
  if (process.env.http_port) return Number(process.env.http_port);
  try {
    const u = new URL(process.env.upstream_url || '');
    if (u.port) return Number(u.port);
  } catch (_) { /* no upstream_url */ }
  return 3000;
}

class Context {
  constructor() {
    this.statusCode = 200;
    this.headerValues = {};
    this.result = undefined;
    this.error = undefined;
  }
  status(code) { if (code === undefined) return this.statusCode; this.statusCode = code; return this; }
  headers(h) { if (h === undefined) return this.headerValues; this.headerValues = h; return this; }
  succeed(body) { this.result = body; return this; }
  fail(err) { this.error = err; return this; }
}

function parseBody(raw, type) {
  if (/^application\/json/i.test(type || '') && raw.length) {
    try { return JSON.parse(raw.toString()); } catch (_) { return raw.toString(); }
  }
  if (/^(text\/|application\/(x-www-form-urlencoded|xml))/i.test(type || '') || !type) return raw.toString();
  return raw;
}

function send(res, code, headers, body) {
  let out = body;
  const h = Object.assign({}, headers);
  const hasType = Object.keys(h).some((k) => k.toLowerCase() === 'content-type');
  if (out === undefined || out === null) out = '';
  else if (Buffer.isBuffer(out) || typeof out === 'string') { /* as is */ }
  else {
    out = JSON.stringify(out);
    if (!hasType) h['Content-Type'] = 'application/json';
  }
  res.writeHead(code, h);
  res.end(out);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  let over = false;
  req.on('data', (c) => {
    size += c.length;
    if (size > maxBody) { over = true; return; }
    chunks.push(c);
  });
  req.on('end', async () => {
    if (over) return send(res, 413, { 'Content-Type': 'text/plain' }, `request body over ${maxBody} bytes\n`);
    const url = new URL(req.url, 'http://localhost');
    const event = {
      body: parseBody(Buffer.concat(chunks), req.headers['content-type']),
      headers: req.headers,
      method: req.method,
      query: Object.fromEntries(url.searchParams),
      path: url.pathname,
    };
    const context = new Context();
    try {
      const returned = await handler(event, context);
      if (context.error !== undefined) {
        console.error(context.error);
        return send(res, 500, {}, String(context.error && context.error.message || context.error) + '\n');
      }
      const body = context.result !== undefined ? context.result : (returned instanceof Context ? undefined : returned);
      send(res, context.statusCode, context.headerValues, body);
    } catch (err) {
      console.error(err);
      send(res, 500, { 'Content-Type': 'text/plain' }, 'the handler threw an error (see the function\'s logs)\n');
    }
  });
});

server.listen(port(), '127.0.0.1', () => console.error(`node-http listening on 127.0.0.1:${port()}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
