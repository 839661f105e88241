import { fmtBytesRate } from '../placement/explain.js';
import { groupColour } from './colour.js';
import type { ReportData } from './data.js';
import { heatmap } from './heatmap.js';
import { siteDiagram } from './sites.js';
import { OUTCOME_COLOUR, timeline } from './timeline.js';
import { esc, stack, svgElement, text, type Fragment } from './xml.js';

/** Three significant digits, no trailing zeros: 0.2, 45.3, 100, 9.84k messages per second. */
export const fmtMessageRate = (x: number): string => (x >= 1000 ? `${Number((x / 1000).toPrecision(3))}k msg/s` : `${Number(x.toPrecision(3))} msg/s`);

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

export function rateOf(d: ReportData): (x: number) => string {
  return d.measure === 'bytes' ? fmtBytesRate : fmtMessageRate;
}

/** What the span is, in one line. */
export function spanLine(d: ReportData): string {
  const s = d.span;
  const what = s.type === 'weighted' ? `weighted (coefficient ${s.coefficient})` : 'mean';
  return (
    `${what} over ${s.periods} period(s) of ${s.periodSeconds} s, ${s.from.slice(0, 19)}Z to ${s.to.slice(0, 19)}Z` +
    (s.approximate ? `, APPROXIMATE (${s.estimated.length} host-period(s) estimated)` : '')
  );
}

export function summaryLine(d: ReportData): string {
  const ok = d.migrations.filter((m) => m.outcome === 'ok').length;
  return (
    `${d.vms.length} running VM(s) in ${d.groups.filter((g) => g.members.length > 1).length} group(s) of 2 or more, ` +
    `on ${d.hosts.length} host(s) in ${d.sites.length} site(s); inter-site ${pct(d.interSite.share)} of VM-to-VM bytes; ` +
    `${d.migrations.length} migration(s) (${ok} ok)`
  );
}

export function matrixFragment(d: ReportData): Fragment {
  const rate = rateOf(d);
  return heatmap({
    vms: d.vms.map((v) => ({ name: v.name, label: `${v.name} (${v.host})`, colour: groupColour(v.group) })),
    groups: d.groups.map((g, i) => ({ members: g.members, colour: groupColour(i) })),
    cells: d.matrix.cells.map((c) => ({ src: c.src, dst: c.dst, value: d.measure === 'bytes' ? c.bytes : c.messages })),
    unit: rate,
    legendTitle: d.measure === 'bytes' ? 'bytes/s' : 'messages/s',
  });
}

function caption(s: string, bold = false): Fragment {
  return { body: text(0, 14, s, bold ? 'font-size="14" font-weight="bold"' : 'fill="#444"'), width: s.length * 7, height: 20 };
}

function lines(ls: string[], colours?: (string | undefined)[]): Fragment {
  return {
    body: ls.map((l, i) => text(0, 14 + i * 16, l, colours?.[i] ? `fill="${colours[i]}"` : '')).join('\n'),
    width: Math.max(0, ...ls.map((l) => l.length * 6.6)),
    height: ls.length * 16 + 4,
  };
}

function groupLines(d: ReportData): string[] {
  const rate = rateOf(d);
  return d.groups.map(
    (g) =>
      `group ${g.id}: ${g.members.join(', ')}  ·  inside ${rate(g.internal)}, out ${rate(g.external)}  ·  ` +
      `${g.sites.length > 1 ? `SPLIT over sites ${g.sites.join(', ')}` : `site ${g.sites.join(', ')}`}`,
  );
}

function interSiteLines(d: ReportData): string[] {
  const i = d.interSite;
  return [
    `inter-site traffic: ${pct(i.share)} of VM-to-VM bytes (${fmtBytesRate(i.bytes)} of ${fmtBytesRate(i.totalBytes)})`,
    ...i.pairs.map((p) => `between ${p.sites[0]} and ${p.sites[1]}: ${fmtBytesRate(p.bytes)}, ${fmtMessageRate(p.messages)}`),
  ];
}

function timelineFragment(d: ReportData): Fragment {
  return timeline(d.migrations, Date.parse(d.span.from), Date.parse(d.generatedAt));
}

/** The whole report as one SVG picture: matrix, groups, sites, inter-site traffic, migrations. */
export function reportSvg(d: ReportData): string {
  const g = groupLines(d);
  const body = stack(
    [
      caption(`virt-cohort report, ${d.generatedAt.slice(0, 19)}Z`, true),
      caption(`${spanLine(d)}; ${d.method} groups by ${d.measure}`),
      caption(summaryLine(d)),
      caption('Communication matrix (row sends to column), VMs ordered by group, groups framed', true),
      matrixFragment(d),
      lines(
        g.length ? g : ['no group: no running VM'],
        d.groups.map((_, i) => groupColour(i)),
      ),
      caption('Sites, hosts and VMs (colour: group)', true),
      siteDiagram(d),
      lines(interSiteLines(d)),
      caption('Migrations since the span began', true),
      timelineFragment(d),
      ...(d.notes.length ? [lines(d.notes.map((n) => `note: ${n}`))] : []),
    ],
    14,
  );
  const margin = 16;
  const framed: Fragment = {
    body: `<rect width="100%" height="100%" fill="#fff"/>\n<g transform="translate(${margin},${margin})">\n${body.body}\n</g>`,
    width: body.width + 2 * margin,
    height: body.height + 2 * margin,
  };
  return `<?xml version="1.0" encoding="UTF-8"?>\n${svgElement(framed, 'virt-cohort report')}\n`;
}

const CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f5f6f8;color:#222}
header{background:#23304a;color:#fff;padding:16px 28px}
header h1{margin:0 0 4px;font-size:20px}
header p{margin:0;opacity:.85;font-size:13px}
main{padding:16px 28px;max-width:1400px}
section{background:#fff;border:1px solid #dde;border-radius:8px;padding:14px 18px;margin:0 0 16px;overflow-x:auto}
h2{font-size:16px;margin:0 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 16px}
.card{background:#fff;border:1px solid #dde;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px}
.card span{font-size:12px;color:#666}
.card.warn b{color:#c0392b}
table{border-collapse:collapse;font-size:13px;margin-top:8px}
th,td{border-bottom:1px solid #e4e4ea;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;vertical-align:middle}
.pill{display:inline-block;border-radius:9px;padding:1px 8px;margin:1px;color:#fff;font-size:12px;font-weight:bold}
.ok{color:#2e8b57}.failed{color:#d62728}.aborted{color:#ff7f0e}
.note{color:#8a5a00;font-size:13px}
p.help{color:#555;font-size:13px;margin:4px 0 8px}
`;

/** A self-contained page: the same pictures inline, with tables for what is better read than seen. No script, no external asset. */
export function reportHtml(d: ReportData): string {
  const rate = rateOf(d);
  const groupOf = new Map(d.vms.map((v) => [v.name, v.group]));
  const pill = (vm: string) => `<span class="pill" data-vm="${esc(vm)}" style="background:${groupOf.has(vm) ? groupColour(groupOf.get(vm)!) : '#888'}">${esc(vm)}</span>`;
  const split = d.groups.filter((g) => g.sites.length > 1).length;
  const failed = d.migrations.filter((m) => m.outcome !== 'ok').length;
  const card = (value: string, label: string, warn = false) => `<div class="card${warn ? ' warn' : ''}"><b>${esc(value)}</b><span>${esc(label)}</span></div>`;
  const row = (cells: string[]) => `<tr>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
  const num = (s: string) => `<td class="num">${s}</td>`;
  const out: string[] = [];
  out.push(
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>virt-cohort report ${esc(d.generatedAt.slice(0, 19))}Z</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
  );
  out.push(
    '<header>',
    `<h1>virt-cohort report</h1>`,
    `<p>${esc(`generated ${d.generatedAt.slice(0, 19)}Z · traffic: ${spanLine(d)} · ${d.method} groups by ${d.measure}`)}</p>`,
    '</header>',
    '<main>',
  );
  out.push(
    '<div class="cards">',
    card(String(d.vms.length), 'running VMs'),
    card(String(d.groups.filter((g) => g.members.length > 1).length), 'groups of 2 or more'),
    card(String(split), 'groups split over sites', split > 0),
    card(`${d.hosts.length} / ${d.sites.length}`, 'hosts / sites'),
    card(pct(d.interSite.share), 'of VM-to-VM bytes cross sites', d.interSite.share > 0.05),
    card(String(d.migrations.length), `migrations (${failed} failed or aborted)`, failed > 0),
    '</div>',
  );
  if (d.notes.length) out.push('<section>', '<h2>Notes</h2>', ...d.notes.map((n) => `<p class="note">${esc(n)}</p>`), '</section>');

  out.push(
    '<section id="matrix">',
    '<h2>Communication matrix</h2>',
    `<p class="help">Each square: what the row's VM sends to the column's VM, ${d.measure === 'bytes' ? 'bytes' : 'messages'} per second ` +
      `(${esc(d.span.type)} over the span), on a log scale (legend on the right); grey: nothing. VMs are ordered by group; each group is framed in its colour. ` +
      'A well-placed cluster shows dark squares only inside frames. Hover a square for its value.</p>',
    svgElement(matrixFragment(d), 'communication matrix'),
    '</section>',
  );

  out.push(
    '<section id="groups">',
    '<h2>Groups</h2>',
    '<table>',
    `<tr><th>group</th><th>VMs</th><th>inside (${esc(d.measure)}/s)</th><th>out of the group</th><th>sites</th><th>hosts</th></tr>`,
    ...d.groups.map(
      (g, i) =>
        `<tr data-group="${g.id}"><td><span class="swatch" style="background:${groupColour(i)}"></span>group ${g.id}</td>` +
        `<td>${g.members.map(pill).join(' ')}</td>${num(esc(rate(g.internal)))}${num(esc(rate(g.external)))}` +
        `<td>${esc(g.sites.join(', '))}${g.sites.length > 1 ? ' <b class="failed">split</b>' : ''}</td><td>${esc(g.hosts.join(', '))}</td></tr>`,
    ),
    '</table>',
    '</section>',
  );

  out.push(
    '<section id="sites">',
    '<h2>Sites, hosts and VMs</h2>',
    '<p class="help">One box per site, one per host inside it; each VM in its group\'s colour. A dashed red host has stopped reporting.</p>',
    svgElement(siteDiagram(d), 'sites, hosts and VMs'),
    '<table>',
    '<tr><th>site</th><th>host</th><th>state</th><th>VMs</th></tr>',
    ...d.hosts.map((h) => row([esc(h.site), esc(h.name), h.live ? 'live' : '<b class="failed">silent</b>', h.vms.map(pill).join(' ') || '-'])),
    '</table>',
    '</section>',
  );

  const i = d.interSite;
  out.push(
    '<section id="inter-site">',
    '<h2>Inter-site traffic</h2>',
    `<p>${esc(`${pct(i.share)} of VM-to-VM bytes cross sites: ${fmtBytesRate(i.bytes)} of ${fmtBytesRate(i.totalBytes)}.`)}` +
      (d.outside.pairs ? esc(` Traffic with endpoints that are not running VMs (not in the matrix): ${d.outside.pairs} pair(s), ${fmtBytesRate(d.outside.bytes)}.`) : '') +
      '</p>',
    ...(i.pairs.length
      ? [
          '<table>',
          '<tr><th>sites</th><th>bytes/s</th><th>messages/s</th><th>share of VM-to-VM bytes</th></tr>',
          ...i.pairs.map(
            (p) =>
              `<tr><td>${esc(`${p.sites[0]} ↔ ${p.sites[1]}`)}</td>${num(esc(fmtBytesRate(p.bytes)))}${num(esc(fmtMessageRate(p.messages)))}` +
              `${num(esc(pct(i.totalBytes ? p.bytes / i.totalBytes : 0)))}</tr>`,
          ),
          '</table>',
        ]
      : []),
    '</section>',
  );

  out.push(
    '<section id="migrations">',
    '<h2>Migrations</h2>',
    `<p class="help">Since the span began (${esc(d.span.from.slice(0, 19))}Z) until the report was made; one row per VM, each bar from start to end of a migration, ` +
      `coloured by outcome (<span class="ok">ok</span>, <span class="failed">failed</span>, <span class="aborted">aborted</span>). Times UTC.</p>`,
    svgElement(timelineFragment(d), 'migration timeline'),
  );
  if (d.migrations.length) {
    out.push(
      '<table>',
      '<tr><th>when (UTC)</th><th>VM</th><th>from → to</th><th>outcome</th><th>duration</th><th>downtime</th><th>data</th><th>why / error</th></tr>',
      ...d.migrations.map(
        (m) =>
          `<tr class="migration"><td>${esc(new Date(m.at).toISOString().replace('T', ' ').slice(0, 19))}</td><td>${pill(m.vm)}</td>` +
          `<td>${esc(`${m.from} → ${m.to}`)}</td><td class="${esc(m.outcome)}" style="color:${OUTCOME_COLOUR[m.outcome] ?? '#888'}">${esc(m.outcome)}</td>` +
          `${num(esc(`${m.seconds.toFixed(1)} s`))}${num(m.downtimeMs !== undefined ? esc(`${m.downtimeMs} ms`) : '-')}` +
          `${num(m.dataMiB !== undefined ? esc(`${m.dataMiB.toFixed(1)} MiB`) : '-')}<td>${esc(m.error ?? m.reason ?? '')}</td></tr>`,
      ),
      '</table>',
    );
  }
  out.push('</section>', '</main>', '</body>', '</html>');
  return `${out.join('\n')}\n`;
}
