import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitEstablished } from './crds.ts';

const failure = (stderr: string) => Object.assign(new Error('Command failed: kubectl wait'), { stderr });

describe('waitEstablished', () => {
  it('waits again when kubectl read a CRD before it had conditions (it failed at once instead of waiting)', () => {
    const calls: string[][] = [];
    let left = 2;
    waitEstablished(
      (...args) => {
        calls.push(args);
        if (left-- > 0)
          throw failure(
            'error: .status.conditions accessor error: <nil> is of the type <nil>, expected []interface{}',
          );
      },
      'crd',
      '-l',
      'app.kubernetes.io/part-of=weft',
    );
    assert.equal(calls.length, 3);
    assert.deepEqual(calls[2], [
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd',
      '-l',
      'app.kubernetes.io/part-of=weft',
    ]);
  });

  it('any other failure (a timeout, a missing CRD) is thrown at once', () => {
    let calls = 0;
    assert.throws(
      () =>
        waitEstablished(() => {
          calls++;
          throw failure('error: timed out waiting for the condition on customresourcedefinitions/x');
        }, 'crd/x'),
      /Command failed/,
    );
    assert.equal(calls, 1);
  });

  it('gives up after five races', () => {
    let calls = 0;
    assert.throws(() =>
      waitEstablished(() => {
        calls++;
        throw failure('.status.conditions accessor error: <nil>');
      }, 'crd/x'),
    );
    assert.equal(calls, 5);
  });
});
