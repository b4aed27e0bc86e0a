/**
 * The resolution step of a request's admission: a request's resolved spec from what the resolver
 * knows (no go command, no charge), else by asking Go, after the build rate limit and the
 * client's limit (its active builds plus its resolutions in flight, maxActiveBuilds) let it.
 */
import type { BuildAdmission } from '../policy/index.js';
import type { Resolver } from '../resolve/index.js';
import { cacheKey, type BuildRequest, type ResolvedSpec } from '../request/index.js';
import { AppError } from '../util/errors.js';
import type { RequestContext } from './context.js';

export interface AdmittedResolverOptions {
  resolver: Resolver;
  admission?: BuildAdmission;
  /** Whether a build of a key is queued, running or succeeded (its versions were resolved before). */
  existing(key: string): Promise<boolean>;
}

export class AdmittedResolver {
  /** Requests being resolved now, by client (counted with its active builds against maxActiveBuilds). */
  private readonly resolving = new Map<string, number>();

  constructor(private readonly o: AdmittedResolverOptions) {}

  async resolve(request: BuildRequest, ctx: RequestContext): Promise<ResolvedSpec> {
    const known = this.o.resolver.peek?.(request) ?? null;
    if (known) return known;
    await ctx.chargeBuild?.();
    const client = ctx.client;
    const resolving = client ? (this.resolving.get(client) ?? 0) : 0;
    if (client && (await this.o.admission?.full(client, resolving))) {
      // At its limit, the client may still join a build in flight or get a finished one: found
      // from what is known (exact versions as they are), without a go command.
      const spec = this.o.resolver.peek?.(request, { stale: true });
      if (spec && (await this.o.existing(cacheKey(spec)))) return spec;
      const max = this.o.admission!.maxActivePerClient;
      const full = `you have ${max} builds queued or running (counting requests being resolved), the most one client may have (maxActiveBuilds)`;
      throw new AppError('too_many_builds', `${full}; nothing was resolved or queued; wait for one to finish or cancel one (DELETE /api/builds/<id>)`, 10);
    }
    if (client) this.resolving.set(client, resolving + 1);
    try {
      return await this.o.resolver.resolve(request);
    } finally {
      if (client) {
        const n = (this.resolving.get(client) ?? 1) - 1;
        if (n <= 0) this.resolving.delete(client);
        else this.resolving.set(client, n);
      }
    }
  }
}
