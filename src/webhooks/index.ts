/**
 * Webhooks (docs/recipes.md "Webhooks"): the outbound side of recipes that follow upstream. The
 * `webhooks` setting's targets (checked here, src/config runs the schema), a `Notifier` the
 * watcher calls with each event (signed POSTs, retried with backoff in the background, never
 * blocking it), and the delivery log in the store that `GET /api/webhooks/deliveries` shows.
 * Tests import the module files (delivery.ts, log.ts, notifier.ts, targets.ts).
 */
export { DEFAULT_KEEP, WebhookDeliverySchema } from './log.js';
export { WebhookNotifier, type Notifier } from './notifier.js';
export { webhookTargetsSchema } from './targets.js';
