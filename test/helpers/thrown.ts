/** The exception `fn` throws (fails the test when it returns normally), for exact assertions on it. */
export function thrown(fn: () => unknown): any {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an exception');
}
