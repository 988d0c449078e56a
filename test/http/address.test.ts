import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLoopback, listenUrl, parseListenAddress } from '../../src/http/address.js';

test('--http takes PORT (loopback), IPV4:PORT and [IPV6]:PORT', () => {
  assert.deepEqual(parseListenAddress('9199'), { host: '127.0.0.1', port: 9199 });
  assert.deepEqual(parseListenAddress('0.0.0.0:80'), { host: '0.0.0.0', port: 80 });
  assert.deepEqual(parseListenAddress('198.18.0.1:65535'), { host: '198.18.0.1', port: 65535 });
  assert.deepEqual(parseListenAddress('[::1]:9199'), { host: '::1', port: 9199 });
  assert.deepEqual(parseListenAddress('[2001:DB8:0::1]:1'), { host: '2001:db8::1', port: 1 });
  assert.deepEqual(parseListenAddress('[::]:9199'), { host: '::', port: 9199 });
});

test('--http refuses anything else with a message that says why', () => {
  const refusals: [string, RegExp][] = [
    ['0', /port 0 is not 1\.\.65535/],
    ['65536', /port 65536 is not 1\.\.65535/],
    ['127.0.0.1:0', /port 0 is not/],
    ['127.0.0.1:', /port \(none\) is not/],
    ['127.0.0.1:http', /port http is not/],
    ['127.0.0.1:+80', /port \+80 is not/],
    [':9199', /no address: write PORT for loopback, or 0\.0\.0\.0:PORT/],
    ['localhost:9199', /localhost is a host name: give an IP address/],
    ['256.0.0.1:80', /256\.0\.0\.1 is not an IPv4 address/],
    ['[fe80::1%eth0]:80', /is not an IPv6 address/],
    ['[1.2.3.4]:80', /\[1\.2\.3\.4\] is not an IPv6 address/],
    ['::1:9199', /is not PORT, IPV4:PORT or \[IPV6\]:PORT/],
    ['[::1]', /is not PORT, IPV4:PORT or \[IPV6\]:PORT/],
    ['', /is not PORT/],
    ['127.0.0.1:80:81', /is not PORT/],
  ];
  for (const [text, message] of refusals) {
    const result = parseListenAddress(text);
    assert.ok('error' in result, `${text} refused`);
    assert.match(result.error, message, text);
  }
});

test('loopback is 127/8 and ::1; URLs bracket IPv6', () => {
  assert.ok(isLoopback({ host: '127.0.0.1', port: 1 }));
  assert.ok(isLoopback({ host: '127.1.2.3', port: 1 }));
  assert.ok(isLoopback({ host: '::1', port: 1 }));
  assert.ok(isLoopback({ host: '::ffff:127.0.0.1', port: 1 }));
  assert.ok(!isLoopback({ host: '0.0.0.0', port: 1 }));
  assert.ok(!isLoopback({ host: '::', port: 1 }));
  assert.ok(!isLoopback({ host: '198.18.0.1', port: 1 }));
  assert.equal(listenUrl({ host: '::1', port: 9199 }), 'http://[::1]:9199');
  assert.equal(listenUrl({ host: '127.0.0.1', port: 9199 }), 'http://127.0.0.1:9199');
});
