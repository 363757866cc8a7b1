/** Waiting on a condition with a deadline: the only way the bench synchronises with the pipeline. */

/**
 * Calls `probe` every `intervalMs` until it returns something other than undefined; throws once `timeoutMs`
 * has passed. A probe that throws ends the wait with its error.
 */
export async function pollEvery<T>(
  what: string,
  timeoutMs: number,
  intervalMs: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await Bun.sleep(intervalMs);
  }
}
