// Assertions for programmer errors. They stay on in production: continuing with a broken
// invariant is how data is lost, so a failed assertion stops the process (see ARCHITECTURE.md,
// "Errors"). Operating errors are StrataError values instead (errors.ts).

/** AssertionFailure is thrown by assert(); it is never caught by stratakv code. */
export class AssertionFailure extends Error {
  override name = 'AssertionFailure';
}

/** assert checks a condition that must hold if the code is correct. */
export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new AssertionFailure(message);
}

/** assertNever ends an exhaustive switch over a discriminated union. */
export function assertNever(value: never, what = 'value'): never {
  throw new AssertionFailure(`unexpected ${what}: ${JSON.stringify(value)}`);
}
