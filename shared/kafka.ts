/**
 * The only module that imports the Kafka client, so that it can be swapped. Records cross this boundary as
 * strings and Buffers; nothing outside sees a client type. The port (types.ts) and the offset arithmetic
 * (positions.ts) are client-independent; the rest is @platformatic/kafka behind them.
 */
export {
  brokerAnswers,
  checkBroker,
  closeAdminConnections,
  committedOffsets,
  deleteGroup,
  deleteNamespace,
  endOffsets,
  ensureTopics,
  groupLag,
  groupMembers,
  seekGroup,
} from "./kafka/admin.ts";
export { KafkaAccessError, kafkaConnection } from "./kafka/connection.ts";
export { createConsumer } from "./kafka/consumer.ts";
export { onBroker } from "./kafka/namespace.ts";
export { partitionFor } from "./kafka/partition.ts";
export { nextPositions } from "./kafka/positions.ts";
export { createProducer } from "./kafka/producer.ts";
export {
  lastRecords,
  RangeTimeoutError,
  type ReadRangeOptions,
  readRange,
  type ScanRangeOptions,
  scanRange,
} from "./kafka/range.ts";
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
