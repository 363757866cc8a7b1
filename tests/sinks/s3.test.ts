/** The S3 sink against the sink conformance suite, on the real broker and the stack's versitygw. */

import { bucketClient } from "../../persist/s3.ts";
import { TOPICS } from "../../shared/topics.ts";
import { testConfig } from "../support.ts";
import { invalidChange, userCreated } from "./changes.ts";
import { describeSinkConformance } from "./conformance.ts";

const env = testConfig();
const client = bucketClient(env);

/** Object contents by name and ETag: an object is only ever rewritten with the same lines. */
const cache = new Map<string, string[]>();

/** The email of every line of every object of the topic: a line stored twice shows twice. */
async function storedEmails(): Promise<string[]> {
  const emails: string[] = [];
  let continuationToken: string | undefined;
  do {
    const page = await client.list({ prefix: `${TOPICS.cdcUsers}/`, ...(continuationToken && { continuationToken }) });
    for (const { key, eTag } of page.contents ?? []) {
      const id = `${key}\u0000${eTag}`;
      let lines = cache.get(id);
      if (!lines) {
        const text = await client.file(key).text();
        lines = text
          .split("\n")
          .filter(Boolean)
          .map((line) => String((JSON.parse(line) as { value: { after?: { email?: string } } }).value.after?.email));
        cache.set(id, lines);
      }
      emails.push(...lines);
    }
    continuationToken = page.isTruncated ? page.nextContinuationToken : undefined;
  } while (continuationToken);
  return emails;
}

describeSinkConformance({
  sink: "s3",
  // Small objects that close fast, so the checks need not wait for the defaults' 10,000 records or 60 s.
  env: { S3_ROTATE_RECORDS: "500", S3_ROTATE_SECONDS: "1" },
  topic: TOPICS.cdcUsers,
  record: userCreated,
  stored: async (series) => (await storedEmails()).filter((email) => email.startsWith(`${series}-`)),
  violation: invalidChange,
  republished: true,
});
