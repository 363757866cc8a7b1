/**
 * `bun run kafka <tool> [args...]`: Kafka's own command-line tools, from the jars `bun run stack` resolves, against
 * the configured broker (KAFKA_BROKERS). The stand-in for rpk, which cannot be installed on our machines. Adds
 * `--bootstrap-server` unless given one; everything else (arguments, stdin, stdout, stderr, signals) passes through
 * to the tool, whose exit code is this script's.
 */
import { constants } from "node:os";
import { config } from "../shared/config.ts";
import { CONFIG_COMMAND, kafkaClasspath, StackError, TOOL_JVM } from "./stack.ts";

/** Named after Kafka's scripts (`kafka-<name>.sh`); `main` is the class each script runs in Kafka 4.x. */
export const TOOLS: Record<string, { main: string; about: string }> = {
  topics: {
    main: "org.apache.kafka.tools.TopicCommand",
    about: "list, describe, create, alter or delete topics",
  },
  "console-consumer": {
    main: "org.apache.kafka.tools.consumer.ConsoleConsumer",
    about: "print records: keys, values, headers, partitions, offsets",
  },
  "consumer-groups": {
    main: "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    about: "list or describe groups (committed offsets, lag), reset offsets",
  },
  configs: {
    main: CONFIG_COMMAND,
    about: "describe or alter configs of topics, brokers, users (SCRAM credentials) and clients",
  },
  "get-offsets": {
    main: "org.apache.kafka.tools.GetOffsetShell",
    about: "offsets of partitions: latest (default), earliest, or at a time",
  },
};

/** Options by which the user names the broker; the configured one is added only without them. */
const BROKER_OPTIONS = ["--bootstrap-server", "--broker-list"];

function usage(): string {
  const width = Math.max(...Object.keys(TOOLS).map((name) => name.length));
  const tools = Object.entries(TOOLS).map(([name, { about }]) => `  ${name.padEnd(width)}  ${about}`);
  return [
    "usage: bun run kafka <tool> [args...]",
    "",
    "Runs one of Kafka's command-line tools against KAFKA_BROKERS (default 127.0.0.1:19092), adding",
    "--bootstrap-server unless given one. `bun run kafka <tool> --help` lists a tool's options.",
    "",
    "tools:",
    ...tools,
    "",
    "examples:",
    "  bun run kafka topics --list",
    "  bun run kafka consumer-groups --describe --group persist",
    "  bun run kafka console-consumer --topic locations.raw.dlq --from-beginning --formatter-property print.headers=true",
  ].join("\n");
}

/** Runs `tool` with `args`; resolves with the exit status to end with (128 + signal when the JVM was killed). */
export async function runTool(tool: { main: string }, args: string[]): Promise<number> {
  const brokerGiven = args.some((arg) =>
    BROKER_OPTIONS.some((option) => arg === option || arg.startsWith(`${option}=`)),
  );
  const broker = brokerGiven ? [] : ["--bootstrap-server", config().KAFKA_BROKERS.join(",")];
  const classpath = await kafkaClasspath((line) => console.error(line));
  const child = Bun.spawn(["java", ...TOOL_JVM, "-cp", classpath, tool.main, ...broker, ...args], {
    stdio: ["inherit", "inherit", "inherit"],
  });
  // Ctrl-C reaches the JVM through the terminal's process group already; a signal sent to this process alone (a
  // supervisor's SIGTERM) must reach it too, or a following consumer would outlive us. The JVM runs its shutdown
  // hooks either way (the console consumer prints its count).
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => child.kill(signal));
  const code = await child.exited;
  const signal = child.signalCode;
  if (signal === null) return code;
  return 128 + (typeof signal === "number" ? signal : constants.signals[signal]);
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === "help" || name === "--help" || name === "-h") {
    console.log(usage());
    return 0;
  }
  const tool = name === undefined ? undefined : TOOLS[name];
  if (!tool) {
    console.error(`${name === undefined ? "no tool given" : `unknown tool: ${name}`}\n\n${usage()}`);
    return 2;
  }
  return runTool(tool, args);
}

if (import.meta.main) {
  try {
    process.exit(await main(Bun.argv.slice(2)));
  } catch (error) {
    console.error(`kafka: ${error instanceof StackError ? error.message : error}`);
    process.exit(1);
  }
}
