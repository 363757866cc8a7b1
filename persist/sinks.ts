/**
 * The sinks persist can run, by the name `PERSIST_SINK` selects. A new sink is a file beside this one that
 * exports a {@link SinkFactory}, and one line here.
 */

import { mongodbSink } from "./mongodb.ts";
import { mysqlSink } from "./mysql.ts";
import { postgresSink } from "./postgres.ts";
import { s3Sink } from "./s3.ts";
import type { SinkFactory } from "./sink.ts";

export const SINKS = {
  postgres: postgresSink,
  mysql: mysqlSink,
  s3: s3Sink,
  mongodb: mongodbSink,
} satisfies Record<string, SinkFactory>;

export type SinkName = keyof typeof SINKS;
