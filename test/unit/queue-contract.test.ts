// The BuildQueue contract (test/helpers/queue-contract.ts) against the embedded queue.
//   node --import tsx --test test/unit/queue-contract.test.ts
import { LocalQueue } from '../../src/queue/index.js';
import { runQueueContract, type ContractJob } from '../helpers/queue-contract.js';

runQueueContract({
  name: 'LocalQueue',
  patienceMs: 5000,
  open: async (processor, { workers }) => {
    const queue = new LocalQueue<ContractJob>(processor, { workers, name: 'contract' });
    return { queue, close: (graceMs) => queue.close(graceMs) };
  },
});
