/**
 * The client side of the command line: commands that talk to a running Fairway server over its
 * HTTP API (build, status, logs, download, add-package/upgrade) and the token helpers. The
 * composition root (src/main) registers them on the program.
 */
export { registerClientCommands } from './client-commands.js';
export { registerPackageCommands } from './packages.js';
export { registerTokenCommands } from './token.js';
