/**
 * Counters for the sidecar's /metrics, fed by staging events, rendered in the Prometheus
 * text exposition format (version 0.0.4).
 */
import type { DsfetchEvent } from "../events.ts";

interface DatasetCounters {
  bytesFetched: number;
  objectsFetched: number;
  cacheHits: number;
  lockWaits: number;
  retries: number;
  verificationFailures: number;
  staged: number;
  bytes: number;
}

const VERIFICATION_CODES = new Set(["INTEGRITY", "ETAG_MISMATCH", "OBJECT_CHANGED"]);

export class StageMetrics {
  private readonly datasets = new Map<string, DatasetCounters>();
  private readonly waiting = new Set<string>();
  private lastBytes = new Map<string, number>();
  ready = false;

  private counters(dataset: string): DatasetCounters {
    let counters = this.datasets.get(dataset);
    if (counters === undefined) {
      counters = {
        bytesFetched: 0,
        objectsFetched: 0,
        cacheHits: 0,
        lockWaits: 0,
        retries: 0,
        verificationFailures: 0,
        staged: 0,
        bytes: 0,
      };
      this.datasets.set(dataset, counters);
    }
    return counters;
  }

  handle = (event: DsfetchEvent): void => {
    if (!("dataset" in event) || event.dataset === undefined) return;
    const counters = this.counters(event.dataset);
    switch (event.type) {
      case "resolved":
        counters.bytes = event.bytes;
        return;
      case "progress": {
        // Progress reports running totals of one transfer; count only what is new. Bytes a
        // folder's restart kept were fetched once, by the attempt before: not again (review,
        // 2026-12-06: they were, and dsfetch_bytes_fetched_total said twice the store's).
        const fetched = event.bytes - (event.keptBytes ?? 0);
        const before = this.lastBytes.get(event.dataset) ?? 0;
        counters.bytesFetched += Math.max(0, fetched - before);
        this.lastBytes.set(event.dataset, fetched);
        counters.objectsFetched = Math.max(counters.objectsFetched, event.objects);
        return;
      }
      case "waiting":
        if (!this.waiting.has(event.dataset)) counters.lockWaits += 1;
        this.waiting.add(event.dataset);
        return;
      case "retry":
        counters.retries += 1;
        return;
      case "cached":
        counters.cacheHits += 1;
        counters.staged = 1;
        return;
      case "staged":
        counters.staged = 1;
        this.lastBytes.delete(event.dataset);
        return;
      default:
        return;
    }
  };

  recordFailure(dataset: string, code: string): void {
    if (VERIFICATION_CODES.has(code)) this.counters(dataset).verificationFailures += 1;
  }

  render(): string {
    const lines: string[] = [];
    const metric = (
      name: string,
      type: "counter" | "gauge",
      help: string,
      pick: (c: DatasetCounters) => number,
    ) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [dataset, counters] of this.datasets) {
        lines.push(`${name}{dataset="${escapeLabel(dataset)}"} ${pick(counters)}`);
      }
    };
    metric(
      "dsfetch_bytes_fetched_total",
      "counter",
      "Bytes downloaded from object storage.",
      (c) => c.bytesFetched,
    );
    metric(
      "dsfetch_objects_fetched_total",
      "counter",
      "Objects downloaded.",
      (c) => c.objectsFetched,
    );
    metric(
      "dsfetch_cache_hits_total",
      "counter",
      "Datasets reused from storage without downloading.",
      (c) => c.cacheHits,
    );
    metric(
      "dsfetch_lock_waits_total",
      "counter",
      "Times this agent waited for another worker's download.",
      (c) => c.lockWaits,
    );
    metric(
      "dsfetch_retries_total",
      "counter",
      "Requests retried after a transient failure.",
      (c) => c.retries,
    );
    metric(
      "dsfetch_verification_failures_total",
      "counter",
      "Datasets whose bytes did not match their ETag, checksum or pinned version.",
      (c) => c.verificationFailures,
    );
    metric(
      "dsfetch_dataset_bytes",
      "gauge",
      "Size of the dataset in object storage.",
      (c) => c.bytes,
    );
    metric("dsfetch_dataset_staged", "gauge", "1 when the dataset is staged.", (c) => c.staged);
    lines.push(
      "# HELP dsfetch_ready 1 when every dataset is staged.",
      "# TYPE dsfetch_ready gauge",
      `dsfetch_ready ${this.ready ? 1 : 0}`,
    );
    return `${lines.join("\n")}\n`;
  }
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}
