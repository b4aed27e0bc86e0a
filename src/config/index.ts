/**
 * Configuration (docs/install.md, the README's configuration table): the settings table
 * (schema.ts) of values of known kinds (values.ts), loaded from file, environment and flags
 * (load.ts), validated at the edge with a message naming the setting (validate.ts); what the
 * settings tell the sandbox (sandbox.ts); what the installation is (install.ts).
 */
export { FAIRWAY_VERSION, MIN_GO_VERSION, NODE_ENGINES, NODE_RECOMMENDED, PROJECT_ROOT, XCADDY_MODULE, XCADDY_VERSION, setupCommand } from './install.js';
export type { Config } from './schema.js';
export { loadConfig } from './load.js';
export { ConfigError } from './validate.js';
export { sandboxLimitsOf, secretFiles, type SecretFile } from './sandbox.js';
