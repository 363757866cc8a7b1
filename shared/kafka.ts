/**
 * The only module that imports the Kafka client, so that it can be swapped. Records cross this boundary as
 * strings and Buffers; nothing outside sees a client type.
 */
export {
  brokerAnswers,
  committedOffsets,
  deleteGroup,
  endOffsets,
  ensureTopics,
  groupLag,
  groupMembers,
} from "./kafka/admin.ts";
export {
  createConsumer,
  type InRecord,
  type KafkaConsumer,
  lastRecords,
  nextPositions,
  type Position,
} from "./kafka/consumer.ts";
export { partitionFor } from "./kafka/partition.ts";
export { createProducer, type Delivery, type KafkaProducer, type OutRecord } from "./kafka/producer.ts";
