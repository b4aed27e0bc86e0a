/**
 * `fairway token create --name ci --scopes build,read [--hash sha256|scrypt] [--json]`: makes a
 * new random token, prints it once, and prints the hash lines to configure (auth file entry and
 * FAIRWAY_TOKENS entry). The server never needs, and never sees, the token itself at rest.
 */
import { Command, Option } from 'commander';
import { SCOPES, TOKEN_NAME_RE, generateToken, isScope, scryptHash, sha256Hash, tokensEnvEntry, type Scope, type TokenEntry } from './index.js';

export interface CreatedToken {
  token: string;
  entry: TokenEntry;
  env: string;
}

export async function createToken(name: string, scopesText: string, hash: 'sha256' | 'scrypt' = 'sha256'): Promise<CreatedToken> {
  if (!TOKEN_NAME_RE.test(name)) throw new Error(`--name: letters, digits, ".", "_" and "-" only (1-64 characters)`);
  const scopes = [...new Set(scopesText.split(/[,+\s]+/).filter(Boolean))];
  if (scopes.length === 0) throw new Error(`--scopes: give at least one of ${SCOPES.join(', ')}`);
  for (const s of scopes) if (!isScope(s)) throw new Error(`--scopes: unknown scope "${s}" (use ${SCOPES.join(', ')})`);
  const token = generateToken();
  const entry: TokenEntry = { name, hash: hash === 'scrypt' ? await scryptHash(token) : sha256Hash(token), scopes: scopes as Scope[] };
  return { token, entry, env: tokensEnvEntry(entry) };
}

export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('manage API tokens (docs/SECURITY.md)');
  token
    .command('create')
    .description('create a token: prints the secret once and the hash to configure on the server')
    .requiredOption('--name <name>', 'a name for the token (shown in logs and rate limits)')
    .option('--scopes <list>', `comma-separated scopes: ${SCOPES.join(', ')} (admin implies build, build implies read)`, 'build')
    .addOption(new Option('--hash <kind>', 'hash to store: sha256 (random tokens) or scrypt').choices(['sha256', 'scrypt']).default('sha256'))
    .option('--json', 'print one JSON object instead of text')
    .action(async (o: { name: string; scopes: string; hash: 'sha256' | 'scrypt'; json?: boolean }) => {
      let created: CreatedToken;
      try {
        created = await createToken(o.name, o.scopes, o.hash);
      } catch (err) {
        process.stderr.write(`fairway token create: ${(err as Error).message}\n`);
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
}
