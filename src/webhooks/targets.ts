/**
 * The `webhooks` setting: a list of `{url, secret, events?}` (JSON from FAIRWAY_WEBHOOKS, a list in
 * the config file), checked once here (src/config runs this schema at start), and how a target is
 * named where it is shown: its origin and path, never its userinfo, query or secret.
 */
import { z } from 'zod';

/** The events Fairway sends (docs/recipes.md "Webhooks"). */
export const WEBHOOK_EVENTS = ['recipe.promoted', 'recipe.failed', 'caddy.released'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export interface WebhookTarget {
  url: string;
  secret: string;
  /** The events this target gets; absent: all of them. */
  events?: WebhookEvent[];
}

/**
 * A target's URL as logs and the API show it: origin and path only (userinfo, query and fragment
 * dropped: they may carry credentials). A string that is not a URL shows as `<invalid URL>`.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    // Not `origin`: it is "null" for schemes other than http(s), which the messages name too.
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '<invalid URL>';
  }
}

/**
 * A message with the target's URL in it (as written, or as fetch normalised it), or its userinfo
 * or query alone, shown with the redacted URL instead: error texts of the network layer are logged.
 */
export function scrubUrl(message: string, url: string): string {
  let out = message;
  const shown = redactUrl(url);
  let u: URL | null = null;
  try {
    u = new URL(url);
  } catch {
    /* not a URL: only the text as written */
  }
  const whole = [url, u?.href].filter((x): x is string => !!x && x !== shown).sort((a, b) => b.length - a.length);
  for (const w of whole) out = out.split(w).join(shown);
  const parts = [u?.username, u?.password, u?.search && u.search.length > 1 ? u.search.slice(1) : ''].filter((x): x is string => !!x);
  for (const p of parts) out = out.split(p).join('<redacted>');
  return out;
}

/** What is wrong with a target URL, or null: http or https, a host, no fragment. */
export function targetUrlError(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'is not a URL (an absolute http:// or https:// URL, e.g. https://ci.example.com/hooks/fairway)';
  }
  const shown = redactUrl(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `${shown}: only http:// and https:// URLs are allowed, not ${u.protocol}`;
  if (!u.hostname) return `${shown}: no host`;
  if (u.hash) return `${shown}: a URL without a #fragment (it is never sent)`;
  return null;
}

const target = z.strictObject(
  {
    url: z.string().superRefine((v, ctx) => {
      const err = targetUrlError(v);
      if (err) ctx.addIssue({ code: 'custom', message: err });
    }),
    // The secret is never repeated in a message.
    secret: z
      .string({ error: 'a non-empty string, the key of the HMAC-SHA256 signature (X-Fairway-Signature-256)' })
      .refine((s) => s.trim() !== '', 'must not be empty (the key of the HMAC-SHA256 signature, X-Fairway-Signature-256)'),
    events: z
      .array(z.enum(WEBHOOK_EVENTS, { error: `each one of ${WEBHOOK_EVENTS.join(', ')}` }))
      .min(1, `leave it out for every event, or list some of ${WEBHOOK_EVENTS.join(', ')}`)
      .transform((l) => [...new Set(l)])
      .optional(),
  },
  { error: (i) => (i.code === 'unrecognized_keys' ? `unknown field(s) ${i.keys.join(', ')}: a target has url, secret and events` : 'a target is an object {url, secret, events?}') },
);

/**
 * The setting: a JSON list (a string, from FAIRWAY_WEBHOOKS) or a list (the config file) of
 * targets. Messages name the entry (`webhooks.1.url`) and never the secret.
 */
export const webhookTargetsSchema = z.preprocess(
  (v, ctx) => {
    if (typeof v !== 'string') return v;
    const t = v.trim();
    if (t === '') return [];
    try {
      return JSON.parse(t) as unknown;
    } catch {
      // The parser's message can quote the text, and with it a secret.
      ctx.addIssue({ code: 'custom', message: 'not a JSON list: expected [{"url": "https://…", "secret": "…", "events": ["recipe.promoted"]}]' });
      return z.NEVER;
    }
  },
  z.array(target, { error: 'a JSON list of {url, secret, events?}' }).max(50, 'at most 50 targets'),
);

/** Parses a list of targets; throws an Error naming the entry and field (never the secret). */
export function parseWebhookTargets(value: unknown): WebhookTarget[] {
  const r = webhookTargetsSchema.safeParse(value);
  if (r.success) return r.data as WebhookTarget[];
  throw new Error(`invalid webhooks: ${r.error.issues.map((i) => `${['webhooks', ...i.path].join('.')}: ${i.message}`).join('; ')}`);
}

/** Whether a target gets an event: every event when it lists none. */
export function wants(t: Pick<WebhookTarget, 'events'>, event: WebhookEvent): boolean {
  return !t.events || t.events.includes(event);
}
