/**
 * The only module that imports the Kafka client, so that it can be swapped. Records cross this boundary as
 * strings and Buffers; nothing outside sees a client type. The port (types.ts), the offset arithmetic
 * (positions.ts) and the range reads (range.ts) are client-independent; producers and consumers are
 * @platformatic/kafka's or librdkafka's as `KAFKA_CLIENT` selects (select.ts), and so are the admin calls a
 * stage makes while it runs (admin.ts).
 */
export {
  brokerAnswers,
  checkBroker,
  closeAdminConnections,
  committedOffsets,
  deleteGroup,
  deleteNamespace,
  deleteTopics,
  endOffsets,
  ensureTopics,
  groupLag,
  groupMembers,
  seekGroup,
} from "./kafka/admin.ts";
export { KafkaAccessError, kafkaConnection } from "./kafka/connection.ts";
export { onBroker } from "./kafka/namespace.ts";
export { partitionFor } from "./kafka/partition.ts";
export { nextPositions } from "./kafka/positions.ts";
export {
  lastRecords,
  RangeTimeoutError,
  type ReadRangeOptions,
  readRange,
  type ScanRangeOptions,
  scanRange,
} from "./kafka/range.ts";
export { scramFailsOnKafka4 } from "./kafka/rdkafka/config.ts";
export { createConsumer, createProducer, type KafkaClient, kafkaClient } from "./kafka/select.ts";
export type {
  ConsumerOptions,
  Delivery,
  InRecord,
  KafkaConnection,
  KafkaConsumer,
  KafkaProducer,
  OutRecord,
  Position,
  ProducerOptions,
} from "./kafka/types.ts";
