/**
 * `work`'s result if it settles within `ms`, else `onTimeout`. The work itself carries on; only the wait ends,
 * and the timer is cleared so a finished wait never keeps the process alive.
 */
export async function within<T>(work: Promise<T>, ms: number, onTimeout: T): Promise<T> {
  let timer: Timer | undefined;
  const deadline = new Promise<T>((resolve) => {
    timer = setTimeout(resolve, ms, onTimeout);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
