/**
 * The delivery log: one store record per delivery (namespace `webhook-deliveries`), so every hub
 * of a fleet shows the same list; the newest `keep` (200) are kept. A record's name starts with
 * its creation time, so the store's sorted listing is the log's order and the newest come last.
 */
import { z } from 'zod';
import type { RecordStore } from '../store/index.js';
import { WEBHOOK_EVENTS } from './targets.js';

export const DELIVERIES_NS = 'webhook-deliveries';
export const DEFAULT_KEEP = 200;

/** One delivery as the log keeps it and `GET /api/webhooks/deliveries` shows it (defined once: the route's response schema). */
export const WebhookDeliverySchema = z
  .object({
    id: z.uuid().describe('the delivery id, sent as X-Fairway-Delivery (the same on every attempt)'),
    event: z.enum(WEBHOOK_EVENTS),
    recipe: z.string().optional().describe("the payload's recipe, when it names one"),
    target: z.string().describe('the target URL as origin and path (userinfo and query left out)'),
    status: z
      .enum(['pending', 'delivered', 'failed'])
      .describe('pending: an attempt is running or the next one is waiting; delivered: a 2xx; failed: a final answer, attempts used up, dropped or abandoned at shutdown'),
    attempts: z.number().int().nonnegative().describe('HTTP attempts made so far'),
    lastStatus: z.number().int().nullable().describe('the HTTP status of the last answer; null when there was none (a network error or a timeout)'),
    lastError: z.string().nullable().describe('why the last attempt did not deliver, or why the delivery ended (null once delivered)'),
    createdAt: z.string(),
    updatedAt: z.string(),
    nextAttemptAt: z.string().nullable().describe('when the next attempt starts, while one is waiting'),
  })
  .strict();
export type WebhookDelivery = z.infer<typeof WebhookDeliverySchema>;

/** A record name that sorts by creation time: `<ms since epoch, 14 digits>-<id>`. */
export function deliveryRecordName(createdAtMs: number, id: string): string {
  return `${String(createdAtMs).padStart(14, '0')}-${id}`;
}

export class DeliveryLog {
  constructor(
    private readonly store: RecordStore,
    readonly keep: number = DEFAULT_KEEP,
  ) {}

  put(name: string, d: WebhookDelivery): Promise<void> {
    return this.store.putRecord(DELIVERIES_NS, name, d);
  }

  /** Removes the oldest records beyond `keep`; returns how many went. */
  async trim(): Promise<number> {
    const names = await this.store.listRecords(DELIVERIES_NS);
    const extra = names.length - this.keep;
    if (extra <= 0) return 0;
    for (const n of names.slice(0, extra)) await this.store.deleteRecord(DELIVERIES_NS, n);
    return extra;
  }

  /** The newest `limit` deliveries, newest first; a record that is unreadable or not a delivery is left out. */
  async list(limit: number = this.keep): Promise<WebhookDelivery[]> {
    const all = await this.store.listRecords(DELIVERIES_NS);
    const names = all.slice(Math.max(0, all.length - Math.max(0, Math.min(limit, this.keep)))).reverse();
    const records = await Promise.all(names.map((n) => this.store.getRecord(DELIVERIES_NS, n).catch(() => null)));
    const out: WebhookDelivery[] = [];
    for (const r of records) {
      const parsed = WebhookDeliverySchema.safeParse(r);
      if (parsed.success) out.push(parsed.data);
    }
    return out;
  }
}
