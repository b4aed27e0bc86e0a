/**
 * The client side of the command line: commands that talk to a running Fairway server over its
 * HTTP API (build, status, logs, download, add-package/upgrade), the token helpers, and the
 * provenance commands (key create, verify). The composition root (src/main) registers them on the
 * program.
 */
import type { Command } from 'commander';
import { registerKeyCommands } from './key.js';
import { registerVerifyCommand } from './verify.js';

export { registerClientCommands } from './client-commands.js';
export { registerPackageCommands } from './packages.js';
export { registerTokenCommands } from './token.js';

/** `fairway key create` and `fairway verify` (docs/provenance.md). */
export function registerProvenanceCommands(program: Command): void {
  registerKeyCommands(program);
  registerVerifyCommand(program);
}
