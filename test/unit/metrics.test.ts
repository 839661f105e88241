import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Report } from '../../src/collector/report.js';
import type { MigrationRecord } from '../../src/manager/history.js';
import { agentMetrics, managerMetrics } from '../../src/metrics/registry.js';
import { startMetricsServer } from '../../src/metrics/server.js';

/** The value of one sample line ("name{labels} value") in Prometheus text. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

test('the metrics endpoint serves the agent and manager metrics in the Prometheus format', async () => {
  const server = await startMetricsServer(0, '127.0.0.1');
  try {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const boundary = 1_700_000_040_000;
    const report: Report = {
      v: 1,
      host: 'h1',
      site: 's',
      period: 1_700_000_010,
      length: 30,
      // The previous read was two periods before this one's start: two periods had no read of their own.
      from: 1_700_000_010_000 - 60_000,
      to: boundary + 4000,
      pairs: [
        ['a|b', 10, 1000],
        ['a|c', 5, 500],
      ],
      overflow: { packets: 3, bytes: 300 },
      unknownTap: 1,
      vms: ['a'],
    };
    agentMetrics.periodClosed(report, boundary, 2, 131072);
    agentMetrics.taps(7);
    let size = 4;
    agentMetrics.watch({ size: async () => size, dropped: 1 }, { status: 'ready' });
    await agentMetrics.timePublish(async () => undefined);
    await assert.rejects(
      agentMetrics.timePublish(async () => {
        throw new Error('down');
      }),
    );
    managerMetrics.round({ interSite: 0.25, groups: [['a', 'b']], view: { answer: { status: 'ok' } }, plan: { moves: [1, 2, 3] }, moves: [1], skipped: [1, 2] }, 0.3);
    managerMetrics.round({ note: 'standing by: the leader is x', interSite: 0, groups: [], moves: [], skipped: [] }, 0.01);
    managerMetrics.round(undefined, 1);
    managerMetrics.watchLeader({ isLeader: true });
    const migrations: MigrationRecord[] = [
      { vm: 'a', from: 'h1', to: 'h2', outcome: 'ok', at: 0, seconds: 12.5, downtimeMs: 40 },
      { vm: 'b', from: 'h1', to: 'h2', outcome: 'aborted', at: 0, seconds: 300 },
    ];
    for (const m of migrations) managerMetrics.migration(m);

    const res = await fetch(server.url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await res.text();
    const expect: Record<string, number> = {
      virt_cohort_agent_packets_total: 15,
      virt_cohort_agent_bytes_total: 1500,
      virt_cohort_agent_overflow_packets_total: 3,
      virt_cohort_agent_overflow_bytes_total: 300,
      virt_cohort_agent_unknown_tap_packets_total: 1,
      virt_cohort_agent_flow_map_entries: 2,
      virt_cohort_agent_flow_map_fill_ratio: 2 / 131072,
      virt_cohort_agent_periods_closed_total: 1,
      virt_cohort_agent_periods_late_total: 1,
      virt_cohort_agent_periods_missing_total: 2,
      virt_cohort_agent_period_close_delay_seconds: 4,
      virt_cohort_agent_publish_seconds_count: 1,
      virt_cohort_agent_publish_failures_total: 1,
      virt_cohort_agent_taps: 7,
      virt_cohort_agent_spool_reports: 4,
      virt_cohort_agent_spool_dropped_reports: 1,
      virt_cohort_redis_connected: 1,
      virt_cohort_manager_moves_proposed_total: 3,
      virt_cohort_manager_moves_held_total: 2,
      virt_cohort_manager_moves_ordered_total: 1,
      virt_cohort_manager_inter_site_ratio: 0.25,
      virt_cohort_manager_groups: 1,
      virt_cohort_manager_leader: 1,
      virt_cohort_manager_round_seconds_count: 3,
      virt_cohort_migration_downtime_seconds_sum: 0.04,
    };
    for (const [name, value] of Object.entries(expect)) assert.equal(sample(text, name), value, name);
    for (const l of [
      'virt_cohort_manager_rounds_total{result="planned"} 1',
      'virt_cohort_manager_rounds_total{result="standby"} 1',
      'virt_cohort_manager_rounds_total{result="failed"} 1',
      'virt_cohort_migrations_total{outcome="ok"} 1',
      'virt_cohort_migrations_total{outcome="aborted"} 1',
      'virt_cohort_migration_duration_seconds_sum{outcome="ok"} 12.5',
      'virt_cohort_migration_duration_seconds_count{outcome="aborted"} 1',
    ]) {
      assert.ok(text.split('\n').includes(l), `${l} in the scrape`);
    }
    assert.match(text, /^# HELP virt_cohort_agent_packets_total /m);
    assert.match(text, /^virt_cohort_process_resident_memory_bytes \d+/m, "the process' own metrics");
    // Live gauges are read at each scrape.
    size = 9;
    assert.equal(sample(await (await fetch(server.url)).text(), 'virt_cohort_agent_spool_reports'), 9);
    assert.equal((await fetch(server.url.replace('/metrics', '/other'))).status, 404);
  } finally {
    await server.close();
  }
});

test('a taken port is a clear error', async () => {
  const a = await startMetricsServer(0);
  try {
    const port = Number(new URL(a.url).port);
    await assert.rejects(startMetricsServer(port), /cannot serve metrics on 127\.0\.0\.1:\d+ \(EADDRINUSE\): another process holds that port: choose another metricsPort/);
  } finally {
    await a.close();
  }
});
