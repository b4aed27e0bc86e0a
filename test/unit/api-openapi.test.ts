// The OpenAPI document at /openapi.json: valid OpenAPI 3.0, tags per group, and every route the
// app registers (seen with an onRoute hook) in `paths` with its method: a route without a schema fails.
// In-process (inject(): no Go, no network; test/helpers/api.ts), milliseconds per test.
//   node --import tsx --test test/unit/api-openapi.test.ts
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { OpenAPIV3 } from 'openapi-types';
import { opsTestPlugin, testApi, type TestApi } from '../helpers/api.js';

/**
 * What OpenAPI 3.0 requires of the parts Fairway uses (no validator package is installed): a
 * version and info, paths starting with '/', operations with at least one response each with a
 * description, declared path parameters for every `{name}` in the path (in: path, required),
 * parameters with a name, a known `in` and a schema, tags that are declared, unique operation ids,
 * JSON schemas with a single string `type` (3.0 has no type arrays or 'null').
 */
function openApiProblems(doc: OpenAPIV3.Document): string[] {
  const problems: string[] = [];
  if (!/^3\.0\.\d+$/.test(doc.openapi)) problems.push(`openapi: ${doc.openapi}`);
  if (typeof doc.info?.title !== 'string' || typeof doc.info?.version !== 'string') problems.push('info.title/info.version');
  const tags = new Set((doc.tags ?? []).map((x) => x.name));
  const ids = new Set<string>();
  const schemas: Array<[string, unknown]> = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    if (!path.startsWith('/')) problems.push(`path ${path}`);
    for (const method of ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const) {
      const op = item?.[method];
      if (!op) continue;
      const where = `${method.toUpperCase()} ${path}`;
      if (op.operationId && ids.has(op.operationId)) problems.push(`${where}: duplicate operationId`);
      if (op.operationId) ids.add(op.operationId);
      for (const t of op.tags ?? []) if (!tags.has(t)) problems.push(`${where}: undeclared tag ${t}`);
      const responses = Object.entries(op.responses ?? {});
      if (!responses.length) problems.push(`${where}: no responses`);
      for (const [status, r] of responses) {
        if (!('$ref' in r) && typeof r.description !== 'string') problems.push(`${where} ${status}: no description`);
        for (const [type, media] of Object.entries(('content' in r && r.content) || {})) schemas.push([`${where} ${status} ${type}`, media.schema]);
      }
      const params = (op.parameters ?? []).filter((p): p is OpenAPIV3.ParameterObject => !('$ref' in p));
      for (const p of params) {
        if (!p.name || !['path', 'query', 'header', 'cookie'].includes(p.in) || !p.schema) problems.push(`${where}: parameter ${JSON.stringify(p)}`);
        if (p.in === 'path' && p.required !== true) problems.push(`${where}: path parameter ${p.name} not required`);
        schemas.push([`${where} ${p.name}`, p.schema]);
      }
      for (const [, name] of path.matchAll(/\{([^}]+)\}/g)) if (!params.some((p) => p.in === 'path' && p.name === name)) problems.push(`${where}: {${name}} not declared`);
      const body = op.requestBody;
      if (body && !('$ref' in body)) for (const [type, media] of Object.entries(body.content)) schemas.push([`${where} body ${type}`, media.schema]);
    }
  }
  const walk = (where: string, s: unknown): void => {
    if (Array.isArray(s)) {
      for (const x of s) walk(where, x);
      return;
    }
    if (s === null || typeof s !== 'object') return;
    const type = (s as { type?: unknown }).type;
    if (type !== undefined && (typeof type !== 'string' || type === 'null')) problems.push(`${where}: schema type ${JSON.stringify(type)}`);
    // A `properties` map is names to schemas, not a schema: a property may be called `type` (CycloneDX's components).
    for (const [k, v] of Object.entries(s)) {
      if (k === 'properties' && v && typeof v === 'object' && !Array.isArray(v)) for (const p of Object.values(v)) walk(where, p);
      else walk(where, v);
    }
  };
  for (const [where, s] of schemas) walk(where, s);
  return problems;
}

type Schema = Omit<OpenAPIV3.SchemaObject, 'anyOf' | 'items' | 'properties'> & { nullable?: boolean; anyOf?: Schema[]; items?: Schema; properties?: Record<string, Schema> };

/**
 * Where a JSON value breaks a schema of the document (the subset Fairway's schemas use: type,
 * nullable, enum, properties, required, additionalProperties: false, items, anyOf), as
 * `path: problem` lines; empty when it conforms. A client generated from the document would
 * break on each of these.
 */
function schemaProblems(value: unknown, schema: Schema | undefined, at = '$'): string[] {
  if (!schema || Object.keys(schema).length === 0) return [];
  if (schema.anyOf) {
    const each = schema.anyOf.map((s) => schemaProblems(value, s, at));
    return each.some((p) => p.length === 0) ? [] : [`${at}: matches none of anyOf (${each.map((p) => p[0]).join(' | ')})`];
  }
  if (value === null) return schema.nullable ? [] : [`${at}: null, not nullable`];
  if (schema.enum && !schema.enum.includes(value)) return [`${at}: ${JSON.stringify(value)} not in ${JSON.stringify(schema.enum)}`];
  const type = Array.isArray(value) ? 'array' : typeof value === 'number' && Number.isInteger(value) && schema.type === 'integer' ? 'integer' : typeof value;
  if (schema.type && schema.type !== type && !(schema.type === 'number' && type === 'number')) return [`${at}: ${type}, documented ${schema.type}`];
  const out: string[] = [];
  if (type === 'array') for (const [i, v] of (value as unknown[]).entries()) out.push(...schemaProblems(v, schema.items, `${at}[${i}]`));
  if (type === 'object' && schema.type === 'object') {
    const obj = value as Record<string, unknown>;
    for (const k of schema.required ?? []) if (!(k in obj)) out.push(`${at}.${k}: required, missing`);
    for (const [k, v] of Object.entries(obj)) {
      const prop = schema.properties?.[k];
      if (!prop) {
        if (schema.additionalProperties === false) out.push(`${at}.${k}: not in the schema`);
      } else out.push(...schemaProblems(v, prop, `${at}.${k}`));
    }
  }
  return out;
}

describe('the OpenAPI document', () => {
  let t: TestApi;
  let ops: Awaited<ReturnType<typeof opsTestPlugin>>;
  const routes: Array<{ method: string; url: string; exposeHead: boolean }> = [];
  before(async () => {
    ops = await opsTestPlugin();
    const collect = (app: FastifyInstance) =>
      app.addHook('onRoute', (r) => {
        for (const method of [r.method].flat()) routes.push({ method, url: r.url ?? r.path, exposeHead: r.exposeHeadRoute !== false });
      });
    t = await testApi({ onApp: collect, plugins: [ops.plugin] });
  });
  after(async () => {
    await t?.close();
    await ops?.close();
  });

  test('is OpenAPI 3 with the groups as tags', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    const doc = res.json() as OpenAPIV3.Document;
    assert.deepEqual(openApiProblems(doc), []);
    assert.equal(doc.info.title, 'Fairway');
    assert.deepEqual(new Set((doc.tags ?? []).map((x) => x.name)), new Set(['builds', 'info', 'compat', 'ops', 'health', 'ui', 'registry']));
    const post = doc.paths['/api/builds']?.post;
    assert.ok(post?.requestBody, 'POST /api/builds documents its body');
    assert.deepEqual(doc.paths['/healthz']?.get?.security, [], 'public routes need no token');
    assert.equal(doc.paths['/api/builds']?.get?.security, undefined, 'others: the document-wide bearer token');
    assert.ok((doc.paths['/api/builds/{id}']?.get?.parameters ?? []).some((p) => 'name' in p && p.name === 'id' && p.in === 'path'));
  });

  test('responses are checked against their schema and keep the fields it does not list', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/builds', payload: { os: 'linux', arch: 'amd64' } });
    assert.equal(res.statusCode, 202, res.body);
    const build = res.json();
    assert.equal(build.status, 'queued');
    assert.deepEqual(build.request, { caddyVersion: 'latest', os: 'linux', arch: 'amd64', plugins: [] }, 'request is not in the schema, still sent');
    assert.equal((await t.app.inject({ method: 'GET', url: `/api/builds/${build.id}` })).json().id, build.id);
  });

  test('answers match their documented schemas exactly (every field documented, every required one sent)', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as OpenAPIV3.Document;
    const queued = (await t.app.inject({ method: 'POST', url: '/api/builds', payload: { os: 'linux', arch: 'arm64', plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' }] } })).json();
    const problems: string[] = [];
    let checked = 0;
    for (const [path, url] of [
      ['/api/versions', '/api/versions'],
      ['/api/packages', '/api/packages'],
      ['/api/catalog', '/api/catalog'],
      ['/api/catalog', '/api/catalog?path=github.com/caddy-dns/cloudflare'],
      ['/api/builds', '/api/builds'],
      ['/api/builds/{id}', `/api/builds/${queued.id}`],
      ['/api/platforms', '/api/platforms'],
      ['/api/stats', '/api/stats'],
      ['/api/agents', '/api/agents'],
      ['/api/recipes', '/api/recipes'],
      ['/healthz', '/healthz'],
    ] as const) {
      const r = await t.app.inject({ method: 'GET', url });
      const op = (doc.paths[path] as Record<string, OpenAPIV3.OperationObject>).get!;
      const documented = op.responses[String(r.statusCode)] as OpenAPIV3.ResponseObject | undefined;
      if (!documented) {
        problems.push(`GET ${url}: status ${r.statusCode} is not documented`);
        continue;
      }
      const schema = documented.content?.['application/json']?.schema as Schema | undefined;
      problems.push(...schemaProblems(r.json(), schema).map((p) => `GET ${url} ${r.statusCode}: ${p}`));
      checked++;
    }
    await t.service.cancel(queued.id);
    assert.deepEqual(problems, []);
    assert.equal(checked, 11);
  });

  test('every operation documents the answers any route can give, in its own envelope; those answers are in that envelope', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as OpenAPIV3.Document;
    const missing: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item as Record<string, OpenAPIV3.OperationObject>)) {
        if (!op?.responses) continue;
        const want = [
          '400',
          '403',
          '421',
          '431',
          '503',
          ...(path.includes('{') ? ['414'] : []),
          ...(op.security && op.security.length === 0 ? [] : ['401', '429']),
          ...(op.requestBody ? ['413', '415'] : []),
        ];
        for (const s of want) if (!op.responses[s]) missing.push(`${method.toUpperCase()} ${path}: ${s}`);
      }
    }
    assert.deepEqual(missing, []);
    // A path parameter over 200 characters: 414 in the envelope of the route's family.
    const long = 'a'.repeat(250);
    const oci = await t.app.inject({ method: 'GET', url: `/v2/caddy/manifests/${long}` });
    assert.equal(oci.statusCode, 414);
    assert.equal(oci.json().errors[0].detail.code, 'uri_too_long');
    const native = await t.app.inject({ method: 'GET', url: `/api/builds/${long}` });
    assert.equal(native.statusCode, 414);
    assert.deepEqual(Object.keys(native.json()), ['error']);
    assert.equal(native.json().error.code, 'uri_too_long');
  });

  test('request schemas are exact: platforms as enums per os, ids and grammar as patterns; links; optional bodies', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as OpenAPIV3.Document;
    const op = (path: string, method: string) => (doc.paths[path] as Record<string, OpenAPIV3.OperationObject>)[method]!;
    // POST /api/builds: one branch per os, with that os's architectures (the service's platforms).
    const body = (op('/api/builds', 'post').requestBody as OpenAPIV3.RequestBodyObject).content['application/json']!.schema as OpenAPIV3.SchemaObject;
    const branches = (body.anyOf ?? []) as OpenAPIV3.SchemaObject[];
    const pairs = branches.map((b) => {
      const props = b.properties as Record<string, OpenAPIV3.SchemaObject>;
      return `${props.os!.enum!.join()}:${props.arch!.enum!.join()}`;
    });
    assert.deepEqual(pairs.sort(), ['linux:amd64,arm64', 'windows:amd64']);
    const plugin = ((branches[0]!.properties as Record<string, OpenAPIV3.ArraySchemaObject>).plugins!.items as OpenAPIV3.SchemaObject).properties as Record<string, OpenAPIV3.SchemaObject>;
    assert.ok(new RegExp(plugin.module!.pattern!).test('github.com/mholt/caddy-l4'));
    assert.ok(!new RegExp(plugin.module!.pattern!).test('github.com/caddyserver/caddy/v2'), 'Caddy is not a plugin');
    // Build ids, digests: by format.
    const id = op('/api/builds/{id}', 'get').parameters!.find((p) => (p as OpenAPIV3.ParameterObject).name === 'id') as OpenAPIV3.ParameterObject;
    assert.equal((id.schema as OpenAPIV3.SchemaObject).pattern, '^[0-9a-f]{64}$');
    const digest = op('/v2/caddy/blobs/{digest}', 'get').parameters!.find((p) => (p as OpenAPIV3.ParameterObject).name === 'digest') as OpenAPIV3.ParameterObject;
    assert.equal((digest.schema as OpenAPIV3.SchemaObject).pattern, '^sha256:[0-9a-f]{64}$');
    // The download API's os and arch as enums of the platforms.
    const query = Object.fromEntries(op('/api/download', 'get').parameters!.map((p) => [(p as OpenAPIV3.ParameterObject).name, (p as OpenAPIV3.ParameterObject).schema as OpenAPIV3.SchemaObject]));
    assert.deepEqual(query.os!.enum, ['linux', 'windows']);
    assert.deepEqual(query.arch!.enum, ['amd64', 'arm64']);
    // Links from a created build to the operations on it.
    const links = (op('/api/builds', 'post').responses['202'] as OpenAPIV3.ResponseObject).links!;
    assert.deepEqual(Object.keys(links).sort(), ['cancelBuild', 'getBuild', 'getBuildArtifact', 'getBuildInfo', 'getBuildLog', 'getBuildProvenance', 'getBuildSbom', 'getBuildSbomAttestation']);
    assert.deepEqual((links.getBuild as OpenAPIV3.LinkObject).parameters, { id: '$response.body#/id' });
    const ids = new Set(Object.values(doc.paths).flatMap((item) => Object.values(item as Record<string, OpenAPIV3.OperationObject>).map((o) => o.operationId)));
    for (const l of Object.values(links)) assert.ok(ids.has((l as OpenAPIV3.LinkObject).operationId), (l as OpenAPIV3.LinkObject).operationId);
    // A body that may be left out is not required (prune); a build request's is.
    assert.equal((op('/api/admin/prune', 'post').requestBody as OpenAPIV3.RequestBodyObject).required, false);
    assert.equal((op('/api/builds', 'post').requestBody as OpenAPIV3.RequestBodyObject).required, true);
    assert.ok(!JSON.stringify(doc).includes('x-fairway-optional-body'));
  });

  test('lists every route the app registered, with its method and a tag', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as OpenAPIV3.Document;
    const gets = new Map(routes.filter((r) => r.method === 'GET').map((r) => [r.url, r]));
    const expected = routes.filter((r) => r.url !== '/openapi.json' && !(r.method === 'HEAD' && gets.get(r.url)?.exposeHead));
    assert.ok(expected.length >= 20, `routes seen: ${expected.length}`);
    for (const groupRoute of ['/api/builds', '/api/download', '/api/catalog', '/metrics', '/api/admin/prune', '/ui/:name', '/healthz']) {
      assert.ok(
        expected.some((r) => r.url === groupRoute),
        `${groupRoute} was registered`,
      );
    }
    const missing: string[] = [];
    for (const r of expected) {
      const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      const op = (doc.paths[path] as Record<string, OpenAPIV3.OperationObject> | undefined)?.[r.method.toLowerCase()];
      if (!op) missing.push(`${r.method} ${r.url}`);
      else if (!op.tags?.length) missing.push(`${r.method} ${r.url} (no tag)`);
    }
    assert.deepEqual(missing, [], 'every route is in the document (a route without a schema is not)');
  });
});
