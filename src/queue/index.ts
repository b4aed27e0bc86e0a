export * from './types.js';
export { LocalQueue, type LocalQueueOptions } from './local.js';
