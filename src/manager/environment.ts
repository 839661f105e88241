import type { Redis } from 'ioredis';
import { Registry } from '../collector/registry.js';
import type { Environment } from '../placement/env.js';
import { storedEnvironment, type StoredEnvironment } from '../placement/fromCollector.js';
import { logger } from '../util/log.js';
import type { ManagerConfig } from './config.js';

const log = logger('manager');

/** The manager's environment, decision after decision: the stored versions read, and the file's override said once. */
export class DecisionEnvironment {
  /** The stored environment last read, parsed once per version. */
  private stored?: StoredEnvironment;
  /** The stored version last said to be overridden by the file (said once per version). */
  private overridden = 0;

  constructor(
    private readonly redis: Redis,
    private readonly cfg: ManagerConfig,
  ) {}

  /**
   * The environment of this decision, read each time: the file (manager.environment) when one is
   * configured, a one-off override said once per stored version; else the version stored in Redis
   * (parsed once per version); else the configured default (a lab's); else none (the registry's).
   */
  async read(): Promise<{ env?: Environment; version?: number }> {
    const version = await new Registry(this.redis).environmentVersion();
    if (this.cfg.env) {
      if (version && version !== this.overridden) {
        log.warn({ version, file: this.cfg.envSource }, `the environment stored in Redis (version ${version}) is not used: the file ${this.cfg.envSource ?? '(manager.environment)'} overrides it`);
        this.overridden = version;
      }
      return { env: this.cfg.env };
    }
    if (!version) return this.cfg.defaultEnv ? { env: this.cfg.defaultEnv } : {};
    if (this.stored?.version !== version) {
      try {
        const next = await storedEnvironment(this.redis, version);
        if (next) {
          log.info({ version, at: new Date(next.at).toISOString(), source: next.source, by: next.by }, `environment version ${version} in force`);
          this.stored = next;
        }
      } catch (err) {
        // Validated when written; a version this manager cannot read (a newer format) leaves the one before in force.
        if (!this.stored) throw err;
        log.error({ err, version, kept: this.stored.version }, `environment version ${version} cannot be read: version ${this.stored.version} stays in force`);
      }
    }
    return this.stored ? { env: this.stored.env, version: this.stored.version } : {};
  }
}
