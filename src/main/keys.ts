/**
 * Who holds which key (docs/provenance.md): the builders' signing key (`serve`, `agent`; a hub
 * never signs), the hub's served public key, the key that signs the image indexes behind tags,
 * and the check that no secret lies where a build sandbox can read it (docs/SECURITY.md).
 */
import type { KeyObject } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { loadOrCreateSigner, loadPublicKey, loadSigner, publicKeyFromPem, type Signer } from '../provenance/index.js';
import type { Config, SecretFile } from '../config/index.js';
import { realPathOf } from '../util/realpath.js';
import type { Toolchain } from '../toolchain/index.js';
import { sandboxVisibleParent } from '../sandbox/index.js';

export type IndexSigning = { signer: Signer; trusted: KeyObject[] };

/** Where `serve` keeps the key it makes on first start when `signingKey` is not set (docs/provenance.md). */
export const DATA_DIR_KEY = 'signing.key';
/** Where a hub keeps the index key it makes on first start when `indexSigningKey` is not set. */
export const DATA_DIR_INDEX_KEY = 'index-signing.key';

/**
 * The host paths every build sandbox binds besides SANDBOX_VISIBLE_PATHS (src/toolchain
 * command()): the Go caches and build dirs, GOROOT, xcaddy, the GOCACHEPROG program.
 */
export function sandboxBound(config: Config, toolchain: Toolchain): string[] {
  return [toolchain.cacheDir, toolchain.goRoot, toolchain.xcaddyBin, ...(config.goCacheShared ? [resolve(config.goCacheProgBin)] : [])];
}

/**
 * Refuses to start when a sandboxed build could read a file that holds a secret (the signing key,
 * the config file, the auth file, credential files: src/config secretFiles), compared by real
 * path, so a symlink into a bound directory counts (docs/SECURITY.md).
 */
export function refuseVisibleSecrets(secrets: ReadonlyArray<SecretFile & { instead?: string }>, bound: readonly string[], logger: Logger): void {
  for (const s of secrets) {
    const dir = sandboxVisibleParent(s.path, bound);
    if (!dir) {
      // A hard link has no path of its own to compare: one in a directory builds see would expose the file.
      const links = statSync(s.path, { throwIfNoEntry: false })?.nlink ?? 1;
      if (links > 1)
        logger.warn(
          { file: s.path, links },
          `${s.setting} ${s.path} has ${links} hard links: a link inside a directory builds see (${bound.join(', ')}) would expose it and cannot be found by its path; keep one link (copy the file, remove the others)`,
        );
      continue;
    }
    const real = realPathOf(s.path);
    const realDir = realPathOf(dir);
    throw new Error(
      `${s.setting} ${s.path}${real !== s.path ? ` (real path ${real})` : ''} is under ${dir}${realDir !== dir ? ` (real path ${realDir})` : ''}, which every build sandbox can read, so a plugin's code could read it: ${s.instead ?? `move it out of ${dir} (e.g. into /etc/fairway/, mode 0600, owned by the user Fairway runs as) and ${s.fix ?? `point ${s.setting} at the new path`}`}`,
    );
  }
}

/** A warning when a key file is readable by others than its owner. */
async function warnIfShared(path: string, logger: Logger): Promise<void> {
  const st = await stat(path).catch(() => null); // missing: the loader says so
  if (st && (st.mode & 0o077) !== 0) logger.warn({ key: path, mode: (st.mode & 0o777).toString(8) }, `the signing key file is readable by other users: chmod 0600 ${path}`);
}

/**
 * The builder's signing key (serve, agent): `signingKey` when set. `serve` without one makes its
 * own on first start, `<dataDir>/signing.key` (mode 0600), and keeps it across restarts: a default
 * install signs its builds. An agent never makes one (a fleet shares one key, and hubs serve its
 * public half): without `signingKey` it says loudly that its builds are unsigned.
 */
export async function builderSigner(config: Config, logger: Logger, role: 'serve' | 'agent', bound: readonly string[]): Promise<Signer | undefined> {
  if (config.signingKey) {
    const keyPath = resolve(config.signingKey); // checked against the sandboxes with the other secrets
    await warnIfShared(keyPath, logger);
    const signer = await loadSigner(keyPath);
    logger.info({ key: keyPath, fingerprint: signer.fingerprint }, `builds are signed with this key (fingerprint ${signer.fingerprint}); its public half is at /api/signing-key`);
    return signer;
  }
  if (role === 'agent') {
    logger.warn(
      'no signing key (signingKey): this agent writes UNSIGNED provenance and unsigned images. The agents of a fleet share one key: set signingKey (FAIRWAY_SIGNING_KEY) to it on every agent, and publicKey to its public half on the hubs (docs/provenance.md)',
    );
    return undefined;
  }
  const keyPath = join(config.dataDir, DATA_DIR_KEY);
  refuseVisibleSecrets(
    [
      {
        setting: "serve's own signing key (no signingKey is set)",
        path: keyPath,
        instead: `keep the data dir ${config.dataDir} out of every directory builds see: set --data-dir elsewhere, or --cache-dir to a directory that does not hold the data dir (its default, <data-dir>/go, is fine), or set signingKey to a key kept elsewhere (\`fairway key create\`)`,
      },
    ],
    bound,
    logger,
  );
  const { signer, created } = await loadOrCreateSigner(keyPath);
  await warnIfShared(keyPath, logger);
  logger.info(
    { key: keyPath, fingerprint: signer.fingerprint, created },
    created
      ? `created a signing key (no signingKey set): builds and images are signed with it (fingerprint ${signer.fingerprint}); its public half is at /api/signing-key. Back the file up: a new key would not verify earlier builds`
      : `builds are signed with this server's key (fingerprint ${signer.fingerprint}), made at its first start; its public half is at /api/signing-key`,
  );
  return signer;
}

/** A hub never signs: it serves the agents' public key (`publicKey`, else the public half of `signingKey`). */
export async function hubPublicKey(config: Config, logger: Logger): Promise<string | undefined> {
  if (config.publicKey) {
    const pem = (await loadPublicKey(config.publicKey)).export({ type: 'spki', format: 'pem' }).toString();
    logger.info({ publicKey: config.publicKey }, "serving the agents' public key at /api/signing-key");
    return pem;
  }
  if (config.signingKey) {
    logger.info({ key: config.signingKey }, 'a hub does not sign (its agents do): serving only the public half of signingKey at /api/signing-key');
    return (await loadSigner(config.signingKey)).publicKeyPem;
  }
  logger.warn(
    "no publicKey (and no signingKey): /api/signing-key answers 404, so this fleet's builds cannot be verified against this hub; set publicKey to the public half of the key the agents sign with (a fleet shares one key; docs/provenance.md)",
  );
  return undefined;
}

/**
 * The key that signs the image indexes behind tags, and the build keys their platform images must
 * verify with first (docs/provenance.md, "Tags"). `serve`: `indexSigningKey` when set, else its
 * build signer; trusted: its build key. A hub: trusted is the agents' key (`publicKey`, else the
 * public half of `signingKey`): without it nothing can be verified, so no index is signed (said at
 * start). Its index key is `indexSigningKey`, else `<dataDir>/index-signing.key`, made at first start
 * like serve's build key, so a default hub signs its tags.
 */
export async function indexSigning(
  config: Config,
  logger: Logger,
  o: { role: 'serve' | 'hub'; buildPublicKeyPem: string | undefined; builder?: Signer; bound: readonly string[] },
): Promise<IndexSigning | undefined> {
  if (!o.buildPublicKeyPem) {
    logger.warn(
      'no build key to verify platform images with (publicKey): the image indexes behind tags are NOT signed, so `cosign verify <host>/caddy/<recipe>:<version>` fails; set publicKey to the public half of the key the agents sign with (docs/provenance.md)',
    );
    return undefined;
  }
  const trusted = [publicKeyFromPem(o.buildPublicKeyPem, 'the build public key')];
  let signer: Signer;
  if (config.indexSigningKey) {
    const keyPath = resolve(config.indexSigningKey); // checked against the sandboxes with the other secrets
    await warnIfShared(keyPath, logger);
    signer = await loadSigner(keyPath);
    logger.info(
      { key: keyPath, fingerprint: signer.fingerprint },
      `image indexes (tags) are signed with indexSigningKey (fingerprint ${signer.fingerprint}), after each platform image verified under the build key; its public half is at /api/index-signing-key`,
    );
  } else if (o.role === 'serve' && o.builder) {
    signer = o.builder;
    logger.info({ fingerprint: signer.fingerprint }, `image indexes (tags) are signed with the build key (fingerprint ${signer.fingerprint}), after each platform image verified under it`);
  } else {
    const keyPath = join(config.dataDir, DATA_DIR_INDEX_KEY);
    refuseVisibleSecrets(
      [
        {
          setting: "the hub's own index signing key (no indexSigningKey is set)",
          path: keyPath,
          instead: `keep the data dir ${config.dataDir} out of every directory builds see (set --data-dir elsewhere), or set indexSigningKey to a key kept elsewhere (\`fairway key create\`)`,
        },
      ],
      o.bound,
      logger,
    );
    const made = await loadOrCreateSigner(keyPath);
    signer = made.signer;
    await warnIfShared(keyPath, logger);
    logger.info(
      { key: keyPath, fingerprint: signer.fingerprint, created: made.created },
      `${made.created ? 'created an index signing key (no indexSigningKey set)' : "image indexes (tags) are signed with this hub's index key, made at its first start"}: fingerprint ${signer.fingerprint}, public half at /api/index-signing-key; an index is signed only after each platform image verified under the build key. Several hubs on one store: give them all the same indexSigningKey`,
    );
  }
  return { signer, trusted };
}
