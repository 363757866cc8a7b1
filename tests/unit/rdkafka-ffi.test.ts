import { ptr } from "bun:ffi";
import { describe, expect, test } from "bun:test";
import { copyOut } from "../../shared/kafka/rdkafka/ffi.ts";

describe("copyOut", () => {
  test("copies the bytes into a buffer of their own", () => {
    const source = Buffer.from("a record's value");
    const copy = copyOut(ptr(source), source.length);
    source.fill(0); // the message's memory goes with its event: the copy must not share it
    expect(copy.toString()).toBe("a record's value");
  });

  test("copies a part from the start", () => {
    const source = Buffer.from("key:value");
    expect(copyOut(ptr(source), 3).toString()).toBe("key");
  });

  test("an empty value is an empty buffer", () => {
    const source = Buffer.from("x");
    const copy = copyOut(ptr(source), 0);
    expect(copy.length).toBe(0);
  });
});
