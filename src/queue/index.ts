export { JobRefused } from './types.js';
export type { JobState, FinalState, JobSnapshot, JobEvent, Processor, AgentInfo, QueueDepth, BuildQueue } from './types.js';
export { LocalQueue } from './local.js';
export { redisConnection } from './bullmq-shared.js';
export { BullMqQueue } from './bullmq-hub.js';
export { BullMqWorker, type RemoteJob } from './bullmq-agent.js';
export { QueueJournal } from './journal.js';
export { RedisLease } from './lease.js';
