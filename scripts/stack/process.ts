/** What the stack's own servers (MariaDB, versitygw, FerretDB) share: a port check, and their pid files. */
import { existsSync, readFileSync } from "node:fs";

/** True when a TCP connection to host:port succeeds within a second. */
export async function portAnswers(host: string, port: number): Promise<boolean> {
  try {
    const socket = await Promise.race([
      Bun.connect({ hostname: host, port, socket: { data() {} } }),
      Bun.sleep(1000).then(() => undefined),
    ]);
    socket?.end();
    return socket !== undefined;
  } catch {
    return false;
  }
}

/**
 * The pid in `pidFile` while it is a running `command`; the command line is checked so that a reused pid is
 * never signalled.
 *
 * @example
 * runningPid("~/.cache/event-pipeline/mariadb/mariadb.pid", "mariadbd"); // 29200, or undefined
 */
export function runningPid(pidFile: string, command: string): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  try {
    return pid > 0 && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(command) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** SIGTERMs the running `command` of `pidFile`, if any, and waits up to `timeoutMs` for it to exit. */
export async function stopServer(name: string, pidFile: string, command: string, timeoutMs: number): Promise<void> {
  const pid = runningPid(pidFile, command);
  if (!pid) {
    console.log(`${name}: no server started by the stack is running`);
    return;
  }
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await Bun.sleep(100);
  console.log(`${name}: stopped pid ${pid}`);
}
