'use strict';

const test = require('node:test');
const assert = require('node:assert');
const handler = require('./handler');

function context() {
  const c = { code: 0, h: {}, body: undefined };
  c.status = (s) => { c.code = s; return c; };
  c.headers = (h) => { c.h = h; return c; };
  c.succeed = (b) => { c.body = b; return c; };
  return c;
}

test('greets the body', async () => {
  const c = await handler({ body: 'Pi', headers: {}, method: 'POST', query: {}, path: '/' }, context());
  assert.strictEqual(c.code, 200);
  assert.strictEqual(c.body, 'Hello from Node.js, Pi!\n');
});

test('greets the world without a body', async () => {
  const c = await handler({ body: '', headers: {}, method: 'POST', query: {}, path: '/' }, context());
  assert.strictEqual(c.body, 'Hello from Node.js, world!\n');
});
