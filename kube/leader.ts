// Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics: a candidate
// takes the Lease when its holder has not renewed it for leaseDuration, measured on the
// candidate's own clock from when it last saw the record change (so clocks need not agree);
// the leader renews every retryPeriod and steps down if it cannot renew within renewDeadline;
// on a clean stop the leader releases the Lease so a standby takes over at once.
import type { Logger } from 'pino';
import { type KubeClient, type KubeObject, RESOURCES } from './client.ts';
import { type Clock, systemClock } from './clock.ts';
import { isConflict, isNotFound } from './errors.ts';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  clock?: Clock;
  log?: Logger;
  onStartedLeading: () => void | Promise<void>;
  onStoppedLeading: () => void | Promise<void>;
}

interface Lease extends KubeObject {
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** metav1.MicroTime */
const microTime = (ms: number) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class LeaderElector {
  private readonly client: KubeClient;
  private readonly o: Required<Omit<LeaderElectionOptions, 'log'>> & { log?: Logger };
  private leading = false;
  private stopped = false;
  private timer: unknown;
  private observedRecord = '';
  private observedTime = 0;
  private lastRenew = 0;
  private loop?: Promise<void>;
  private wake?: () => void;

  constructor(client: KubeClient, opts: LeaderElectionOptions) {
    this.client = client;
    this.o = {
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      clock: systemClock,
      ...opts,
    };
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops campaigning; a leader steps down (onStoppedLeading) and releases the Lease. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.o.clock.clearTimeout(this.timer);
    this.wake?.();
    await this.loop;
    if (this.leading) {
      this.leading = false;
      await this.o.onStoppedLeading();
      await this.release();
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      this.wake = r;
      this.timer = this.o.clock.setTimeout(r, ms);
    });
  }

  private async run(): Promise<void> {
    const { clock, log } = this.o;
    while (!this.stopped) {
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew();
      } catch (err) {
        log?.warn(
          { err, lease: `${this.o.namespace}/${this.o.name}` },
          'leader election: lease request failed',
        );
      }
      if (this.stopped) break;
      if (ok) {
        this.lastRenew = clock.now();
        if (!this.leading) {
          this.leading = true;
          log?.info({ identity: this.o.identity }, 'became leader');
          await this.o.onStartedLeading();
        }
      } else if (this.leading && clock.now() - this.lastRenew > this.o.renewDeadlineMs) {
        this.leading = false;
        log?.error({ identity: this.o.identity }, 'lost leadership: could not renew the lease in time');
        await this.o.onStoppedLeading();
      }
      // Candidates poll with jitter; the leader renews on the period.
      const wait = this.leading ? this.o.retryPeriodMs : this.o.retryPeriodMs * (1 + 0.2 * Math.random());
      await this.sleep(wait);
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { clock, identity, namespace, name } = this.o;
    const now = clock.now();
    const spec = (transitions: number, acquireTime: string) => ({
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
      acquireTime,
      renewTime: microTime(now),
      leaseTransitions: transitions,
    });
    let lease: Lease;
    try {
      lease = await this.client.get<Lease>(RESOURCES.leases, name, namespace);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.client.create<Lease>(RESOURCES.leases, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec: spec(0, microTime(now)),
        });
        this.observe(identity, microTime(now), now);
        return true;
      } catch (e) {
        if (isConflict(e) || (e as { statusCode?: number }).statusCode === 409) return false;
        throw e;
      }
    }
    const holder = lease.spec?.holderIdentity ?? '';
    const record = `${holder}|${lease.spec?.renewTime ?? ''}`;
    if (record !== this.observedRecord) this.observe(holder, lease.spec?.renewTime ?? '', now);
    const durationMs = (lease.spec?.leaseDurationSeconds ?? 15) * 1000;
    if (holder && holder !== identity && now < this.observedTime + durationMs) return false;
    const mine = holder === identity;
    const transitions = (lease.spec?.leaseTransitions ?? 0) + (mine ? 0 : 1);
    const acquireTime = mine && lease.spec?.acquireTime ? lease.spec.acquireTime : microTime(now);
    try {
      const updated = await this.client.update<Lease>(RESOURCES.leases, {
        ...lease,
        spec: spec(transitions, acquireTime),
      });
      this.observe(identity, updated.spec?.renewTime ?? '', now);
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  private observe(holder: string, renewTime: string, now: number): void {
    this.observedRecord = `${holder}|${renewTime}`;
    this.observedTime = now;
  }

  private async release(): Promise<void> {
    try {
      const lease = await this.client.get<Lease>(RESOURCES.leases, this.o.name, this.o.namespace);
      if (lease.spec?.holderIdentity !== this.o.identity) return;
      await this.client.update<Lease>(RESOURCES.leases, {
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: '',
          leaseDurationSeconds: 1,
          renewTime: microTime(this.o.clock.now()),
        },
      });
      this.o.log?.info('released the leader lease');
    } catch (err) {
      this.o.log?.warn({ err }, 'could not release the leader lease; a standby takes over when it expires');
    }
  }
}
