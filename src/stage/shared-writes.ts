/**
 * The datasets of one run being written to shared storage at once, so that two that fit
 * alone but not together do not both fall back to ephemeral volumes (found in review: a
 * prefetch of two such datasets left shared storage empty, run after run, each filling the
 * disk for the other). A dataset that meets a full disk while another of the run was writing
 * there waits for the others to finish, then tries shared storage once more, one such retry
 * at a time; the second full disk is a fallback (stage-dataset.ts).
 */
export class SharedWrites {
  private active = 0;
  private idleWaiters: Array<() => void> = [];
  private retrying: Promise<void> = Promise.resolve();

  /** An attempt starts writing to shared storage; call the returned function when it ends. */
  begin(): () => void {
    this.active += 1;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.active -= 1;
      if (this.active === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const wake of waiters) wake();
      }
    };
  }

  /** Attempts writing now, this one included. */
  writers(): number {
    return this.active;
  }

  /**
   * Runs `retry` once no attempt of the run writes to shared storage, one retry at a time
   * (two retries at once would fill the disk for each other again).
   */
  retryAlone<T>(retry: () => Promise<T>): Promise<T> {
    const run = this.retrying.then(async () => {
      await this.idle();
      return retry();
    });
    this.retrying = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  private idle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
