/**
 * `fairway token create --name ci --scopes build,read [--json]`: makes a new random token, prints
 * it once, and prints the hash lines to configure (auth file entry and FAIRWAY_TOKENS entry). The
 * server never needs, and never sees, the token itself at rest.
 *
 * `fairway token hash [--name ci --scopes build] [--json]`: the same lines for an existing secret
 * read on stdin (to replace a `scrypt:` hash the server no longer accepts, keeping the client's secret).
 */
import type { Command } from 'commander';
import { SCOPES, TOKEN_NAME_RE, bearerTokenError, generateToken, isScope, sha256Hash, tokensEnvEntry, type Scope, type TokenEntry } from '../auth/index.js';
import { errorMessage } from '../util/errors.js';

export interface CreatedToken {
  token: string;
  entry: TokenEntry;
  env: string;
}

function parseScopes(name: string, scopesText: string): Scope[] {
  if (!TOKEN_NAME_RE.test(name)) throw new Error(`--name: letters, digits, ".", "_" and "-" only (1-64 characters)`);
  const scopes = [...new Set(scopesText.split(/[,+\s]+/).filter(Boolean))];
  if (scopes.length === 0) throw new Error(`--scopes: give at least one of ${SCOPES.join(', ')}`);
  for (const s of scopes) if (!isScope(s)) throw new Error(`--scopes: unknown scope "${s}" (use ${SCOPES.join(', ')})`);
  return scopes as Scope[];
}

export async function createToken(name: string, scopesText: string): Promise<CreatedToken> {
  const scopes = parseScopes(name, scopesText);
  const token = generateToken();
  const entry: TokenEntry = { name, hash: sha256Hash(token), scopes };
  return { token, entry, env: tokensEnvEntry(entry) };
}

export interface HashedSecret {
  hash: string;
  entry?: TokenEntry;
  env?: string;
}

/** The sha256 line for an existing secret (one trailing newline is ignored), and with a name its entries. */
export function hashSecret(secretText: string, name?: string, scopesText = 'build'): HashedSecret {
  const secret = secretText.replace(/\r?\n$/, '');
  const err = bearerTokenError(secret);
  if (err) throw new Error(`the secret on stdin cannot be used: ${err}`);
  const hash = sha256Hash(secret);
  if (name === undefined) return { hash };
  const entry: TokenEntry = { name, hash, scopes: parseScopes(name, scopesText) };
  return { hash, entry, env: tokensEnvEntry(entry) };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('manage API tokens (docs/SECURITY.md)');
  token
    .command('create')
    .description('create a token: prints the secret once and the hash to configure on the server')
    .requiredOption('--name <name>', 'a name for the token (shown in logs and rate limits)')
    .option('--scopes <list>', `comma-separated scopes: ${SCOPES.join(', ')} (admin implies build, build implies read)`, 'build')
    .option('--json', 'print one JSON object instead of text')
    .action(async (o: { name: string; scopes: string; json?: boolean }) => {
      let created: CreatedToken;
      try {
        created = await createToken(o.name, o.scopes);
      } catch (err) {
        process.stderr.write(`fairway token create: ${errorMessage(err)}\n`);
        process.exit(2);
      }
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ token: created.token, authFileEntry: created.entry, fairwayTokensEntry: created.env })}\n`);
        return;
      }
      process.stdout.write(
        [
          `token (shown once; give it to the client as "Authorization: Bearer <token>" or FAIRWAY_TOKEN):`,
          `  ${created.token}`,
          ``,
          `add to the server's auth file (JSON array, config "authFile"):`,
          `  ${JSON.stringify(created.entry)}`,
          ``,
          `or to FAIRWAY_TOKENS (comma-separated):`,
          `  ${created.env}`,
          ``,
        ].join('\n'),
      );
    });

  token
    .command('hash')
    .description('hash an existing secret read on stdin (sha256, the only hash the server accepts), e.g. to replace a scrypt: entry')
    .option('--name <name>', 'also print the auth file and FAIRWAY_TOKENS entries for this token name')
    .option('--scopes <list>', `with --name: comma-separated scopes: ${SCOPES.join(', ')}`, 'build')
    .option('--json', 'print one JSON object instead of text')
    .action(async (o: { name?: string; scopes: string; json?: boolean }) => {
      if (process.stdin.isTTY) process.stderr.write('type or paste the secret, then Enter and Ctrl-D:\n');
      let h: HashedSecret;
      try {
        h = hashSecret(await readStdin(), o.name, o.scopes);
      } catch (err) {
        process.stderr.write(`fairway token hash: ${errorMessage(err)}\n`);
        process.exit(2);
      }
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ hash: h.hash, ...(h.entry ? { authFileEntry: h.entry, fairwayTokensEntry: h.env } : {}) })}\n`);
        return;
      }
      const lines = [`hash (sha256; only safe for long random secrets, prefer \`fairway token create\`):`, `  ${h.hash}`, ``];
      if (h.entry) lines.push(`auth file entry:`, `  ${JSON.stringify(h.entry)}`, ``, `or FAIRWAY_TOKENS entry:`, `  ${h.env}`, ``);
      process.stdout.write(lines.join('\n'));
    });
}
