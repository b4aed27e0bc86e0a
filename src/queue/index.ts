export { JobRefused } from './types.js';
export type { JobState, FinalState, JobSnapshot, JobEvent, Processor, AgentInfo, QueueDepth, BuildQueue } from './types.js';
export { LocalQueue } from './local.js';
export { BullMqQueue, BullMqWorker, redisConnection, type RemoteJob } from './bullmq.js';
export { QueueJournal } from './journal.js';
export { RedisLease } from './lease.js';
