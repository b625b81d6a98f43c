// JSON that keeps integers beyond 2^53 exact: execution seeds are 63-bit, and a
// plain JSON.parse would show (and send back) a rounded seed. Such integers parse
// to BigInt (when the browser gives the reviver the source text) and print back as digits.

const DIGITS = /^-?\d+$/;

export function parseJson(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value === "number" && !Number.isSafeInteger(value) && context && DIGITS.test(context.source)) {
      return BigInt(context.source);
    }
    return value;
  });
}

export function toJson(value, indent) {
  return JSON.stringify(value, (key, v) => {
    if (typeof v !== "bigint") return v;
    return typeof JSON.rawJSON === "function" ? JSON.rawJSON(v.toString()) : Number(v);
  }, indent);
}
