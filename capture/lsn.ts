/** WAL positions: PostgreSQL writes them `X/Y` (two hex halves); numbers compare and subtract. */

/**
 * The position `X/Y` as a number.
 *
 * @example
 * lsnValue("16/B374D848"); // 97500059720n
 */
export const lsnValue = (lsn: string): bigint => {
  const [high = "0", low = "0"] = lsn.split("/");
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
};

/**
 * The number as PostgreSQL writes the position.
 *
 * @example
 * lsnText(97500059720n); // "16/B374D848"
 */
export const lsnText = (value: bigint): string =>
  `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
