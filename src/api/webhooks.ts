/**
 * `GET /api/webhooks/deliveries` (admin): the webhook delivery log, newest first, from the store
 * (src/webhooks: one record per delivery, so every hub shows the same). Targets are shown by
 * origin and path; secrets are never in a record.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DEFAULT_KEEP, WebhookDeliverySchema, type Notifier } from '../webhooks/index.js';
import { errors } from './schemas.js';

export interface WebhooksApiOptions {
  notifier: Pick<Notifier, 'deliveries'>;
}

const DeliveriesQuery = z.object({
  limit: z
    .string()
    .regex(/^[1-9][0-9]{0,3}$/, 'a whole number from 1')
    .optional()
    .describe(`how many of the newest deliveries (1–${DEFAULT_KEEP} are kept; a larger number means all of them; default all)`),
});

export const webhooksApi: FastifyPluginAsync<WebhooksApiOptions> = async (instance, { notifier }) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/api/webhooks/deliveries',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['ops'],
        operationId: 'listWebhookDeliveries',
        summary: 'Webhook deliveries, newest first (admin): event, target (origin and path), attempts, status, last answer',
        querystring: DeliveriesQuery,
        response: { 200: z.object({ deliveries: z.array(WebhookDeliverySchema) }).strict(), ...errors(400, 401, 403) },
      },
    },
    async (req, reply) => {
      const limit = req.query.limit === undefined ? DEFAULT_KEEP : Math.min(Number(req.query.limit), DEFAULT_KEEP);
      reply.header('Cache-Control', 'no-store');
      return { deliveries: await notifier.deliveries(limit) };
    },
  );
};
