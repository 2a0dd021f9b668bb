// The kstatus conditions (Stalled, Reconciling) as a pure function of a resource's others.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ConditionInput } from '../kube/conditions.ts';
import { CONDITION, REASON } from './conditions.ts';
import { IDENTITY_REASON } from './identity/model.ts';
import { progressOf } from './status.ts';

const c = (
  type: string,
  status: ConditionInput['status'],
  reason: string,
  message = reason,
): ConditionInput => ({
  type,
  status,
  reason,
  message,
});
const shown = (l: ConditionInput[]) => l.map((x) => [x.type, x.status, x.reason, x.message]);

test('progressOf: Ready and Programmed True is neither Stalled nor Reconciling (kstatus Current)', () => {
  assert.deepEqual(
    progressOf([
      c(CONDITION.Accepted, 'True', REASON.Accepted),
      c(CONDITION.ResolvedRefs, 'True', REASON.ResolvedRefs),
      c(CONDITION.Ready, 'True', REASON.Programmed),
      c(CONDITION.Programmed, 'True', REASON.Applied, '3/3 proxies applied generation 2'),
    ]),
    [],
  );
});

test('progressOf: proxies still applying the generation is Reconciling with their count', () => {
  assert.deepEqual(
    shown(
      progressOf([
        c(CONDITION.Accepted, 'True', REASON.Accepted),
        c(CONDITION.Ready, 'True', REASON.Programmed),
        c(CONDITION.Programmed, 'False', REASON.ApplyPending, '1/3 proxies applied generation 2'),
      ]),
    ),
    [[CONDITION.Reconciling, 'True', REASON.ApplyPending, '1/3 proxies applied generation 2']],
  );
});

test('progressOf: a missing Service, an invalid spec, a port not found are Stalled with the first cause', () => {
  for (const [cause, type] of [
    [REASON.ServiceNotFound, CONDITION.ResolvedRefs],
    [REASON.PortNotFound, CONDITION.ResolvedRefs],
    [REASON.Invalid, CONDITION.Accepted],
  ] as const) {
    assert.deepEqual(
      shown(
        progressOf([
          c(
            CONDITION.Accepted,
            type === CONDITION.Accepted ? 'False' : 'True',
            type === CONDITION.Accepted ? cause : REASON.Accepted,
            'why',
          ),
          ...(type === CONDITION.ResolvedRefs ? [c(type, 'False', cause, 'why')] : []),
          c(CONDITION.Ready, 'False', REASON.NotProgrammed, 'why'),
          c(CONDITION.Programmed, 'False', REASON.NotProgrammed, 'see Ready'),
        ]),
      ),
      [[CONDITION.Stalled, 'True', cause, 'why']],
      cause,
    );
  }
});

test('progressOf: an invalid new spec over a last good one is Stalled (the current generation never takes effect)', () => {
  assert.deepEqual(
    shown(
      progressOf([
        c(CONDITION.Accepted, 'False', REASON.Invalid, 'spec.rules: bad'),
        c(CONDITION.Ready, 'False', REASON.LastGoodProgrammed, 'The previous version stays programmed'),
      ]),
    ),
    [[CONDITION.Stalled, 'True', REASON.Invalid, 'spec.rules: bad']],
  );
});

test('progressOf: overridden in some namespaces but Ready is not Stalled; overridden everywhere is', () => {
  const over = c(CONDITION.Overridden, 'True', REASON.RouteTakesPrecedence, 'route wins');
  assert.deepEqual(progressOf([over, c(CONDITION.Ready, 'True', REASON.Programmed)]), []);
  assert.deepEqual(
    shown(progressOf([over, c(CONDITION.Ready, 'False', REASON.NotProgrammed, 'route wins')])),
    [[CONDITION.Stalled, 'True', REASON.RouteTakesPrecedence, 'route wins']],
  );
});

test('progressOf: Mesh: a failed write is Reconciling (retried); a config too large or a CA Secret missing is Stalled', () => {
  assert.deepEqual(shown(progressOf([c(CONDITION.Ready, 'False', REASON.WriteFailed, 'conflict')])), [
    [CONDITION.Reconciling, 'True', REASON.WriteFailed, 'conflict'],
  ]);
  assert.deepEqual(shown(progressOf([c(CONDITION.Ready, 'False', REASON.ConfigTooLarge, 'shop: 2 MiB')])), [
    [CONDITION.Stalled, 'True', REASON.ConfigTooLarge, 'shop: 2 MiB'],
  ]);
  assert.deepEqual(
    shown(
      progressOf([
        c(CONDITION.Accepted, 'True', REASON.Accepted),
        c(CONDITION.Ready, 'False', IDENTITY_REASON.SecretNotFound, 'no weft-ca'),
        c('CertificateAuthorityReady', 'False', IDENTITY_REASON.SecretNotFound, 'no weft-ca'),
      ]),
    ),
    [[CONDITION.Stalled, 'True', IDENTITY_REASON.SecretNotFound, 'no weft-ca']],
  );
});
