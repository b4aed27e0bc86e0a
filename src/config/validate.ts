/**
 * Validation of the merged settings: each value against the settings table (schema.ts), then the
 * rules between settings; what is wrong is a ConfigError naming every setting at fault.
 */
import { configSchema, type Settings } from './schema.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The settings, parsed and checked, from the merged sources (file < environment < flags). */
export function validateSettings(merged: Record<string, unknown>): Settings {
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const msgs = parsed.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${msgs.join('; ')}`);
  }
  const c = parsed.data;
  if (c.maxArtifactSize > c.buildFileSizeMax) {
    const rule = `buildFileSizeMax: must not be smaller than maxArtifactSize (${c.maxArtifactSize} bytes)`;
    throw new ConfigError(`invalid configuration: ${rule}: the go command writes the binary under this limit`);
  }
  if (c.headersTimeout > c.requestTimeout) {
    throw new ConfigError(`invalid configuration: headersTimeout: must not be longer than requestTimeout (${c.requestTimeout} ms)`);
  }
  return c;
}
