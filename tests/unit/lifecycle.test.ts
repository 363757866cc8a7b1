import { describe, expect, test } from "bun:test";
import { createLifecycle, PHASES } from "../../shared/lifecycle.ts";
import { createLogger } from "../../shared/log.ts";

const log = createLogger("test", "silent");

describe("createLifecycle", () => {
  test("runs steps phase by phase, whatever order they were added in", async () => {
    const lifecycle = createLifecycle(log, 5_000);
    const ran: string[] = [];
    for (const phase of [...PHASES].reverse()) lifecycle.onShutdown(phase, phase, () => ran.push(phase));
    lifecycle.onShutdown("stop intake", "second step of the first phase", () => ran.push("intake, again"));
    await lifecycle.shutdown("test");
    expect(ran).toEqual([PHASES[0], "intake, again", ...PHASES.slice(1)]);
  });

  test("a failing step is logged and the later ones still run", async () => {
    const lifecycle = createLifecycle(log, 5_000);
    const ran: string[] = [];
    lifecycle.onShutdown("flush the producer", "fails", () => {
      throw new Error("broker gone");
    });
    lifecycle.onShutdown("close sinks and pools", "closes", () => ran.push("closed"));
    await lifecycle.shutdown("test");
    expect(ran).toEqual(["closed"]);
  });

  test("is idempotent: a second signal waits for the same shutdown", async () => {
    const lifecycle = createLifecycle(log, 5_000);
    let runs = 0;
    lifecycle.onShutdown("stop intake", "count", () => runs++);
    const [first, second] = [lifecycle.shutdown("SIGTERM"), lifecycle.shutdown("SIGINT")];
    expect(second).toBe(first);
    await first;
    expect(runs).toBe(1);
    expect(lifecycle.stopping).toBe(true);
  });

  test("announces the stop before the first step, so waits such as a backoff end at once", async () => {
    const lifecycle = createLifecycle(log, 5_000);
    let announced = false;
    void lifecycle.stopRequested.then(() => {
      announced = true;
    });
    lifecycle.onShutdown("stop intake", "look", async () => {
      await Promise.resolve();
      expect(announced).toBe(true);
    });
    await lifecycle.shutdown("test");
  });

  test("rejects once the deadline passes, while a step still hangs", async () => {
    const lifecycle = createLifecycle(log, 50);
    lifecycle.onShutdown("finish and commit the current batch", "hangs", () => new Promise(() => {}));
    await expect(lifecycle.shutdown("test")).rejects.toThrow("shutdown took longer than 50 ms");
  });
});
