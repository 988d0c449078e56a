// keepalived's notify scripts (notify_up, notify_down, quorum_up, quorum_down): started as
// keepalived's notify_exec starts them, with the words of the configuration as their arguments,
// in their own process group, output discarded, never waited for (a hanging script holds nothing
// of lvsd's). Credentials are resolved when the configuration is loaded, so that an unknown user
// is refused then and not at the first failure.

import { spawn } from 'node:child_process';
import { scriptCredentials } from './misc.js';

/** A script ready to start: its argv and whom it runs as (null: lvsd's own user). */
export interface NotifyScript {
  argv: string[];
  ids: { uid: number; gid: number } | null;
}

/** Starts notify scripts; a fake in tests records them. */
export interface ScriptRunner {
  run(script: NotifyScript): void;
}

/** Resolves a script's user and group (LvsError when unknown). */
export function notifyScript(
  keyword: string,
  argv: string[],
  user: string | null,
  group: string | null,
): NotifyScript {
  return { argv, ids: scriptCredentials(keyword, user, group) };
}

export function processScriptRunner(onError: (argv: string[], message: string) => void): ScriptRunner {
  return {
    run(script) {
      const child = spawn(script.argv[0]!, script.argv.slice(1), {
        detached: true,
        stdio: 'ignore',
        ...(script.ids ?? {}),
      });
      child.once('error', (error) => onError(script.argv, error.message));
      child.unref();
    },
  };
}
