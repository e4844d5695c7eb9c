/**
 * Waits for best-effort work (a cleanup) to settle, but at most `ms`: after a stall the
 * storage may be hung, and removing an attempt or releasing a lock there would hold back the
 * dataset's error for as long as the storage is gone. Resolves true when the work settled in
 * time, false when the time ran out; the work's outcome is not reported either way (it goes
 * on in the background, and a later run removes what it left: volumes/cleanup.ts).
 */
export function settleWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    const settled = () => {
      clearTimeout(timer);
      resolve(true);
    };
    work.then(settled, settled);
  });
}
