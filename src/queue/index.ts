export * from './types.js';
export { LocalQueue, type LocalQueueOptions } from './local.js';
export { BullMqQueue, BullMqWorker, listAgents, redisConnection, type BullConfig, type AgentOptions } from './bullmq.js';
export { RedisLog } from './redislog.js';
