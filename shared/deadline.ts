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

/** An HTTP answer with its body read as text. */
export interface Answer {
  response: Response;
  text: string;
}

/**
 * Fetches `url` and reads its body within `timeoutMs`, else rejects with a `TimeoutError` DOMException and
 * aborts the request. The deadline is a timer of its own raced against the request, not `AbortSignal.timeout`:
 * Bun's fetch is known not to always honour that signal (a request to a busy server can stay pending long past
 * it), and a wait without an end would stall whatever awaits the answer.
 *
 * @example
 * const { response, text } = await fetchText("http://127.0.0.1:3000/readyz", {}, 2_000);
 */
export async function fetchText(url: string, init: RequestInit, timeoutMs: number): Promise<Answer> {
  const controller = new AbortController();
  const signal = init.signal ? AbortSignal.any([controller.signal, init.signal]) : controller.signal;
  const request = (async () => {
    const response = await fetch(url, { ...init, signal });
    return { response, text: await response.text() };
  })();
  const answer = await within(request, timeoutMs, undefined);
  if (answer) return answer;
  const error = new DOMException(`no answer within ${timeoutMs} ms`, "TimeoutError");
  controller.abort(error);
  throw error;
}
