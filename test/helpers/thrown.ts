import { expect } from 'vitest';
import { AoError } from '../../src/errors';

/** The exception `fn` throws (fails the test when it returns normally), for exact assertions on it. */
export function thrown(fn: () => unknown): any {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an exception');
}

/** The AoError a promise rejects with (fails the test when it resolves or rejects with something else). */
export async function rejection(p: Promise<unknown>): Promise<AoError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(AoError);
  return e as AoError;
}

/** Whatever a promise rejects with, of any type (fails the test when it resolves): for comparing peers' rejections. */
export async function rejected(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}
