export * from './types.js';
export { FsStore, assertKey } from './fs.js';
