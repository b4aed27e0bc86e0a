/** What the settings tell the build sandbox: its resource limits, and the files that hold secrets, which no build may see. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from './schema.js';

/** The resource limits of sandboxed commands per profile (src/sandbox's SandboxLimits), from the settings. */
type LimitSetting = 'buildMemoryMax' | 'buildTasksMax' | 'buildTmpfsSize' | 'buildFileSizeMax' | 'runMemoryMax' | 'runTasksMax' | 'runTmpfsSize';

export function sandboxLimitsOf(c: Pick<Config, LimitSetting>) {
  return {
    toolchain: { memoryBytes: c.buildMemoryMax, tasks: c.buildTasksMax, tmpfsBytes: c.buildTmpfsSize, fileBytes: c.buildFileSizeMax },
    binary: { memoryBytes: c.runMemoryMax, tasks: c.runTasksMax, tmpfsBytes: c.runTmpfsSize, fileBytes: c.runTmpfsSize },
  };
}

/** A file that holds a secret, and the setting (or variable) that names it. */
export interface SecretFile {
  setting: string;
  path: string;
  /** How to name the moved file, when not by setting `setting`. */
  fix?: string;
}

/** The environment file the systemd units read (deploy/systemd, EnvironmentFile=): it may hold FAIRWAY_FLEET_TOKEN, FAIRWAY_TOKENS. */
export const UNIT_ENV_FILE = '/etc/fairway/fairway.env';

/**
 * Every file this configuration names that holds a secret, which no sandboxed build may see
 * (checked at start by src/main): the signing keys (signingKey, indexSigningKey), the config file (fleetToken, webhook secrets, a Redis URL with
 * its password), the auth file (token hashes), the units' environment file, and, for an S3
 * store, the AWS SDK's credential and token files named by their variables (or the defaults in
 * ~/.aws). Files that do not exist are left out, except the signing keys (whose absence is
 * reported where it is loaded).
 */
export function secretFiles(config: Config, env: NodeJS.ProcessEnv = process.env): SecretFile[] {
  const out: SecretFile[] = [];
  if (config.signingKey) out.push({ setting: 'signingKey', path: resolve(config.signingKey) });
  if (config.indexSigningKey) out.push({ setting: 'indexSigningKey', path: resolve(config.indexSigningKey) });
  const existing = (setting: string, path: string | undefined, fix?: string) => {
    if (path && existsSync(path)) out.push({ setting, path: resolve(path), fix });
  };
  existing('the config file', config.configFile, 'start Fairway with --config (or FAIRWAY_CONFIG) naming the new path');
  existing('authFile', config.authFile);
  existing(`the units' environment file`, UNIT_ENV_FILE, 'keep it where the units read it (EnvironmentFile=)');
  if (config.store?.startsWith('s3://')) {
    const home = env.HOME || '';
    existing('AWS_SHARED_CREDENTIALS_FILE', env.AWS_SHARED_CREDENTIALS_FILE || (home && join(home, '.aws', 'credentials')));
    existing('AWS_CONFIG_FILE', env.AWS_CONFIG_FILE || (home && join(home, '.aws', 'config')));
    existing('AWS_WEB_IDENTITY_TOKEN_FILE', env.AWS_WEB_IDENTITY_TOKEN_FILE);
    existing('AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE);
  }
  return out;
}
