/**
 * Holders of a bounded resource: at most `limit` units held at once (a count of turns, or
 * bytes of memory), the others waiting in order. A holder larger than the whole limit still
 * gets its turn, alone. Every acquire() that resolved must be followed by one release() of
 * the same units.
 */
export class Turns {
  private readonly limit: number;
  private held = 0;
  private readonly waiting: { readonly units: number; readonly go: () => void }[] = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Resolves once `units` are this caller's. */
  async acquire(units = 1): Promise<void> {
    if (this.waiting.length === 0 && this.fits(units)) {
      this.held += units;
      return;
    }
    await new Promise<void>((go) => this.waiting.push({ units, go }));
  }

  /** Takes `units` if they are free now (and nobody waits for them): true if taken. */
  tryAcquire(units = 1): boolean {
    if (this.waiting.length > 0 || !this.fits(units)) return false;
    this.held += units;
    return true;
  }

  release(units = 1): void {
    this.held -= units;
    // In order: a large waiter is not overtaken for good by smaller ones behind it.
    for (let next = this.waiting[0]; next !== undefined && this.fits(next.units); ) {
      this.waiting.shift();
      this.held += next.units;
      next.go();
      next = this.waiting[0];
    }
  }

  private fits(units: number): boolean {
    return this.held === 0 || this.held + units <= this.limit;
  }
}
