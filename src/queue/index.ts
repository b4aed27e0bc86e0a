export * from './types.js';
export { LocalQueue, requeuedLine, type LocalQueueOptions, type RestoreReport } from './local.js';
export { listAgents, redisConnection, type BullConfig } from './bullmq-shared.js';
export { BullMqQueue } from './bullmq-hub.js';
export { BullMqWorker, type AgentOptions, type RemoteJob } from './bullmq-agent.js';
export { RedisLog } from './redislog.js';
export { QueueJournal, type JournalEntry, type JournalLoad, type JournalState } from './journal.js';
