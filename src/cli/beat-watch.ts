/**
 * Whether the main thread's heartbeat (util/main-thread-beat.ts) has stood still for longer
 * than the bound. Pure: fed the beat count and this watcher's own clock at every check.
 *
 * Only time this watcher saw pass in steps of about one check counts: when the whole process
 * did not run (SIGSTOP, a suspended VM, a starved machine), the watcher did not run either,
 * and the gap it finds on waking counts as at most two checks. The main thread gets its turn
 * to beat again before it is judged (a paused process is not a stuck one).
 */
export class BeatWatch {
  private readonly boundMs: number;
  private readonly checkMs: number;
  private lastBeat: number;
  private lastCheck: number;
  private stillMs = 0;

  constructor(boundMs: number, checkMs: number, beat: number, now: number) {
    this.boundMs = boundMs;
    this.checkMs = checkMs;
    this.lastBeat = beat;
    this.lastCheck = now;
  }

  /** How long the beat has stood still, counted as above. */
  get stoodStillMs(): number {
    return this.stillMs;
  }

  /** True once the beat has stood still for the bound. */
  check(beat: number, now: number): boolean {
    const gap = Math.max(0, now - this.lastCheck);
    this.lastCheck = now;
    if (beat !== this.lastBeat) {
      this.lastBeat = beat;
      this.stillMs = 0;
      return false;
    }
    this.stillMs += Math.min(gap, 2 * this.checkMs);
    return this.stillMs >= this.boundMs;
  }
}
