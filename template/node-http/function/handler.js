'use strict';

// Called once per request; answer through context or return the body.
module.exports = async (event, context) => {
  const name = (typeof event.body === 'string' ? event.body : '').trim() || 'world';
  return context
    .status(200)
    .headers({ 'Content-Type': 'text/plain' })
    .succeed(`Hello from Node.js, ${name}!\n`);
};
