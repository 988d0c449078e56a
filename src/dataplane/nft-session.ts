// lvsd's own long-lived `nft -i`: nft input sent through one netlink socket that lives as long as
// lvsd does. A table made there with `flags owner` is the kernel's to remove the moment that socket
// closes: when lvsd dies in any way (SIGKILL included), its stdin pipe closes, nft reads the end of
// its input and exits, and the table goes with it. Only that session may change the table (others
// get EPERM), and `nft flush ruleset` passes it by. The layer-2 plane's ingress drop lives there, so
// that a dead lvsd leaves the frames to the kernel (and `table inet lvsd`, which fails closed).
//
// Each call is one transaction (`include` of a file written for it), followed by a command that
// fails with a name of ours, so that the session's output tells where the answer to the call ends.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How long one transaction may take before the session is taken for hung. */
const ANSWER_MS = 10_000;
const POLL_MS = 5;

export class NftSession {
  private child: ChildProcess | null = null;
  private dir: string | null = null;
  private output = -1;
  /** How much of the output file earlier calls read. */
  private read = 0;
  private calls = 0;
  private readonly nap = new Int32Array(new SharedArrayBuffer(4));

  /** `nft`: how to run nft (a test runs it inside a namespace). */
  constructor(private readonly nft: readonly string[] = ['nft']) {}

  /** Runs the nft script in the session as one transaction; throws with nft's error when it fails. */
  run(script: string): void {
    const child = this.session();
    const file = join(this.dir!, 'input.nft');
    writeFileSync(file, script);
    const marker = `lvsdsession${++this.calls}`;
    child.stdin!.write(`include "${file}"\nlist table netdev ${marker}\n`);
    const answer = this.answer(marker, child);
    // nft's reply to our marker command, and before it what the script itself said.
    const own = answer.slice(0, answer.lastIndexOf('Error:', answer.indexOf(`list table netdev ${marker}`)));
    if (/Error:/.test(own)) throw new Error(`nft: ${own.trim()}`);
  }

  /** Ends the session: what it owns is removed by the kernel. */
  close(): void {
    // At once (not on a later turn of the event loop): nft reads the end of its input and exits.
    this.child?.stdin?.destroy();
    this.child = null;
    if (this.output >= 0) closeSync(this.output);
    this.output = -1;
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }

  private session(): ChildProcess {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.child;
    this.close();
    this.dir = mkdtempSync(join(tmpdir(), 'lvsd-nft-'));
    const outputPath = join(this.dir, 'output');
    const writer = openSync(outputPath, 'a');
    this.output = openSync(outputPath, 'r');
    this.read = 0;
    const child = spawn(this.nft[0]!, [...this.nft.slice(1), '-i'], { stdio: ['pipe', writer, writer] });
    closeSync(writer);
    // The session must not keep lvsd's event loop alive, nor outlive it.
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    child.on('error', () => undefined);
    child.stdin!.on('error', () => undefined);
    this.child = child;
    return child;
  }

  /** The session's output up to nft's answer to the marker command (synchronous: the host plumbing is). */
  private answer(marker: string, child: ChildProcess): string {
    let text = '';
    const chunk = Buffer.alloc(65536);
    const deadline = Date.now() + ANSWER_MS;
    for (;;) {
      const n = readSync(this.output, chunk, 0, chunk.length, this.read);
      if (n > 0) {
        this.read += n;
        text += chunk.toString('utf8', 0, n);
        // The marker's error quotes it (and then underlines it: read with the next answer).
        if (text.includes(`list table netdev ${marker}\n`)) return text;
        continue;
      }
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        this.close();
        throw new Error(`nft -i did not answer: ${text.trim() || 'no output'}`);
      }
      Atomics.wait(this.nap, 0, 0, POLL_MS);
    }
  }
}
