// Run inside the lab's director namespace by the e2e harness: the real data plane (worker, TUN,
// host plumbing) driven by ipvsadm-style argument lists arriving as JSON lines on stdin.
//   {"id":1,"argv":["-A","-t","198.18.0.1:80","-s","rr"]}  {"id":2,"kind":"snapshot","connections":true}
//   {"id":3,"kind":"stats"}  {"id":4,"kind":"close"}
// Each gets one JSON line back: {"id":1,"ok":true,"value":...} or {"id":1,"ok":false,"code":...,"message":...}.

import { createInterface } from 'node:readline';
import { parseArgs } from '../../src/cli/parse.js';
import { startDataplaneEngine } from '../../src/dataplane/start.js';

const engine = await startDataplaneEngine({ stateDir: process.argv[2]!, tunName: process.argv[3] ?? 'lvs0' });
process.stdout.write(`${JSON.stringify({ id: 0, ok: true, value: 'ready' })}\n`);

type Request = { id: number; argv?: string[]; kind?: 'snapshot' | 'stats' | 'close'; connections?: boolean };

async function handle(request: Request): Promise<unknown> {
  if (request.argv) {
    const command = parseArgs(request.argv);
    if (command.kind !== 'execute') throw new Error(`not an execute command: ${request.argv.join(' ')}`);
    return engine.execute(command.op);
  }
  if (request.kind === 'snapshot') return engine.snapshot({ connections: request.connections ?? false });
  if (request.kind === 'stats') return engine.stats();
  await engine.close();
  return null;
}

for await (const line of createInterface({ input: process.stdin })) {
  const request = JSON.parse(line) as Request;
  let reply: object;
  try {
    reply = { id: request.id, ok: true, value: await handle(request) };
  } catch (error) {
    reply = {
      id: request.id,
      ok: false,
      code: (error as { code?: string }).code,
      message: (error as Error).message,
    };
  }
  process.stdout.write(`${JSON.stringify(reply)}\n`);
  if (request.kind === 'close') break;
}
await engine.close();
// stdin stays open on the harness side: leave without waiting for it.
process.exit(0);
