/** A minimal unbounded push/pull channel: producers push, one consumer iterates until close. */
export class Channel<T> implements AsyncIterable<T> {
  private readonly buf: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | null = null;
  private closed = false;

  push(v: T): void {
    if (this.closed) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: v, done: false });
    } else this.buf.push(v);
  }

  close(): void {
    this.closed = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: undefined as never, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.buf.length) return Promise.resolve({ value: this.buf.shift()!, done: false });
        if (this.closed) return Promise.resolve({ value: undefined as never, done: true });
        return new Promise((r) => (this.waiter = r));
      },
      return: () => {
        this.close();
        this.buf.length = 0;
        return Promise.resolve({ value: undefined as never, done: true });
      },
    };
  }
}
