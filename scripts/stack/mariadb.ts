/**
 * The local MariaDB for persist's `mysql` sink: Debian's `mariadb-server` binaries on a private data directory
 * under the stack's home, so nothing of the system's own MariaDB (or its service manager) is touched. Reused
 * when something already answers on the port of MYSQL_URL; the user and database of the URL are created.
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { portAnswers, runningPid, stopServer } from "./process.ts";

/** Where the stack's MariaDB keeps its data, socket, pid and log. */
export interface MariaDbPaths {
  home: string;
  dataDir: string;
  socket: string;
  pidFile: string;
  log: string;
}

/** The paths of the stack's MariaDB under `stackHome`. */
export const mariaDbPaths = (stackHome: string): MariaDbPaths => {
  const home = join(stackHome, "mariadb");
  return {
    home,
    dataDir: join(home, "data"),
    socket: join(home, "mariadb.sock"),
    pidFile: join(home, "mariadb.pid"),
    log: join(home, "mariadb.log"),
  };
};

const START_TIMEOUT_MS = 30_000;

/**
 * Runs `sql` as MariaDB's root, by unix-socket authentication as the OS root: over the private socket of the
 * stack's server, else over the default one (Debian's own service, started by the package where systemd runs).
 */
const asRoot = (paths: MariaDbPaths, sql: string) => {
  const socket = existsSync(paths.socket) ? [`--socket=${paths.socket}`] : [];
  return $`mariadb ${socket} -uroot -e ${sql}`.nothrow().quiet();
};

/** The pid of the MariaDB this stack started, while it runs. */
export const runningMariaDbPid = (paths: MariaDbPaths) => runningPid(paths.pidFile, "mariadbd");

/**
 * Makes MYSQL_URL's server answer: reuses whatever listens on its port, else starts `mariadbd` on the private
 * data directory (initialised on first use), then creates the URL's user and database (local-only credentials).
 *
 * @example
 * await mariaDbUp("mysql://pipeline:pipeline@127.0.0.1:3306/pipeline", mariaDbPaths(STACK_HOME));
 */
export async function mariaDbUp(mysqlUrl: string, paths: MariaDbPaths): Promise<void> {
  const url = new URL(mysqlUrl);
  const port = Number(url.port || 3306);
  if (await portAnswers(url.hostname, port)) {
    console.log(`mariadb: reusing the server answering on ${url.hostname}:${port}`);
  } else {
    if (!Bun.which("mariadbd", { PATH: `${process.env.PATH}:/usr/sbin` }))
      throw new Error("mariadbd is not installed; install it with:\n  apt-get install -y mariadb-server");
    mkdirSync(paths.home, { recursive: true });
    // As the user running the stack: the mysql user could not reach a data directory under a private home.
    const user = (await $`id -un`.quiet().text()).trim();
    if (
      !existsSync(join(paths.dataDir, "mysql", "user.frm")) &&
      !existsSync(join(paths.dataDir, "mysql", "global_priv.frm"))
    ) {
      rmSync(paths.dataDir, { recursive: true, force: true }); // an initialisation that did not finish
      console.log(`mariadb: initialising ${paths.dataDir}`);
      await $`mariadb-install-db --user=${user} --datadir=${paths.dataDir} --auth-root-authentication-method=socket --skip-test-db`.quiet();
    }
    rmSync(paths.socket, { force: true });
    // Detached, its own session: it outlives this script, as the broker does.
    const server = Bun.spawn(
      [
        "/usr/sbin/mariadbd",
        "--no-defaults",
        `--user=${user}`,
        `--datadir=${paths.dataDir}`,
        `--socket=${paths.socket}`,
        `--pid-file=${paths.pidFile}`,
        `--log-error=${paths.log}`,
        `--bind-address=${url.hostname}`,
        `--port=${port}`,
        "--innodb-buffer-pool-size=128M",
        "--skip-name-resolve",
      ],
      { detached: true, stdio: ["ignore", "ignore", "ignore"] },
    );
    server.unref();
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await portAnswers(url.hostname, port))) {
      if (server.exitCode !== null || Date.now() > deadline)
        throw new Error(`MariaDB did not start on ${url.hostname}:${port}; see ${paths.log}`);
      await Bun.sleep(200);
    }
    console.log(`mariadb: started pid ${server.pid} on ${url.hostname}:${port}, data ${paths.dataDir}`);
  }
  const name = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  const db = decodeURIComponent(url.pathname.slice(1));
  // Identifiers and the password come from our own default URL or the operator's; quoted all the same.
  const literal = (text: string) => `'${text.replaceAll("\\", "\\\\").replaceAll("'", "''")}'`;
  const result = await asRoot(
    paths,
    `create database if not exists \`${db.replaceAll("`", "``")}\`;
     create user if not exists ${literal(name)}@'%' identified by ${literal(password)};
     alter user ${literal(name)}@'%' identified by ${literal(password)};
     grant all on \`${db.replaceAll("`", "``")}\`.* to ${literal(name)}@'%';`,
  );
  if (result.exitCode === 0) console.log(`mariadb: ${name}@${url.host}/${db} ready`);
  else console.log(`mariadb: could not log in as root to create ${name} and ${db}; the server's owner must`);
}

/** Stops the MariaDB this stack started (none else); resolves once it has exited. */
export const mariaDbDown = (paths: MariaDbPaths) => stopServer("mariadb", paths.pidFile, "mariadbd", 30_000);
