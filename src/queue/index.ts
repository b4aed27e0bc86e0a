export * from './types.js';
export { LocalQueue, requeuedLine, type LocalQueueOptions, type RestoreReport } from './local.js';
export { BullMqQueue, BullMqWorker, listAgents, redisConnection, type BullConfig, type AgentOptions, type RemoteJob } from './bullmq.js';
export { RedisLog } from './redislog.js';
export { RedisLease } from './lease.js';
export { QueueJournal, type JournalEntry, type JournalLoad, type JournalState } from './journal.js';
