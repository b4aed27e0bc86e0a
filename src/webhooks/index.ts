/**
 * Webhooks (docs/recipes.md "Webhooks"): the outbound side of recipes that follow upstream. The
 * `webhooks` setting's targets (checked here, src/config runs the schema), a `Notifier` the
 * watcher calls with each event (signed POSTs, retried with backoff in the background, never
 * blocking it), and the delivery log in the store that `GET /api/webhooks/deliveries` shows.
 */
export { DEFAULT_RETRY, backoffDelay, classifyStatus, parseRetryAfter, signBody, verifySignature, type AttemptOutcome, type RetryPolicy } from './delivery.js';
export { DEFAULT_KEEP, DELIVERIES_NS, DeliveryLog, WebhookDeliverySchema, deliveryRecordName, type WebhookDelivery } from './log.js';
export { WebhookNotifier, type DeliveryResult, type Notifier, type NotifierOptions, type WebhookPayload, type WebhookPlugin } from './notifier.js';
export { WEBHOOK_EVENTS, parseWebhookTargets, redactUrl, scrubUrl, targetUrlError, wants, webhookTargetsSchema, type WebhookEvent, type WebhookTarget } from './targets.js';
