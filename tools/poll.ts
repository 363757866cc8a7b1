/** Waiting on a condition with a deadline: how tests, benches and the fault run synchronise with the pipeline. */

/**
 * Calls `probe` every `intervalMs` until it returns something other than undefined, or throws once
 * `timeoutMs` has passed. A probe that throws ends the wait with its error.
 */
export async function pollEvery<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new TimeoutError(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await Bun.sleep(intervalMs);
  }
}

/** A wait that ran out of time (as opposed to a probe that failed). */
export class TimeoutError extends Error {
  override name = "TimeoutError";
}
