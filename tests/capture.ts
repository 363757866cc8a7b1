/**
 * A capture of a test's own: its slot and publication, and their cleanup. Free of the live-server preload, so a
 * test file that needs servers only in some of its tests can import it.
 */
import pg from "pg";
import { parseConfig } from "../shared/config.ts";

/**
 * Settings for a capture of its own (slot and publication named after `run`), and the cleanup that drops them
 * again: a slot left behind would hold the shared cluster's WAL back for good.
 *
 * @example
 * const { env, drop } = ownCapture(run);
 * const capture = await spawnStage("capture", env);
 * afterAll(async () => { await capture.stop(); await drop(); });
 */
export function ownCapture(run: string) {
  const slot = `test_${run.replaceAll("-", "_")}`;
  const env = { CAPTURE_SLOT: slot, CAPTURE_PUBLICATION: slot };
  async function drop(): Promise<void> {
    const source = new pg.Client({ connectionString: parseConfig(process.env).CAPTURE_DATABASE_URL });
    await source.connect();
    try {
      await source.query("select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1", [
        slot,
      ]);
      await source.query(`drop publication if exists ${slot}`);
      await source.query("delete from event_pipeline_capture where slot_name = $1", [slot]);
    } finally {
      await source.end();
    }
  }
  return { env, drop };
}
