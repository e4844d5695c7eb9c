/** Durations for `prune --older-than`: a whole number with s, m, h, d or w ("7d", "12h"). Pure. */

export const DURATION_FORMS =
  'a whole number followed by s, m, h, d or w, with no space: "90m", "12h", "7d", "2w"';

const UNIT_MS: Readonly<Record<string, number>> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

export type DurationResult = { ok: true; ms: number } | { ok: false; reason: string };

export function parseDuration(text: string): DurationResult {
  const match = /^(\d{1,9})([smhdw])$/.exec(text);
  if (!match) return { ok: false, reason: `${JSON.stringify(text)} is not a duration` };
  const ms = Number(match[1]) * (UNIT_MS[match[2] ?? "s"] ?? 1_000);
  if (ms <= 0) return { ok: false, reason: `${JSON.stringify(text)} is zero` };
  return { ok: true, ms };
}
