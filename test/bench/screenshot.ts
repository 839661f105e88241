// The picture of the HTML report in docs/report.png: `virt-cohort report --html`
// rendered by headless Chromium (Debian's, through puppeteer-core), 1000 px wide,
// from the header down to the groups. Run as root after setup:
//   node dist/test/bench/screenshot.js [--lab NAME] [--span N] [--out FILE] [--width PX]
// With --lab it pictures that lab as it is; without, it brings up a 2 x 2 lab
// with the guests of test/lab/views.test.ts (one group split over the sites,
// one inside site b), waits for --span periods of traffic, and removes it.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { labDown, labUp } from '../../src/lab/lab.js';
import { packageRoot } from '../../src/paths.js';
import { run, sleep } from '../../src/util/exec.js';
import { msToNextBoundary } from '../../src/util/period.js';
import { launchChromium, openFile } from '../helpers/browser.js';
import { startViewGuests } from '../helpers/lab.js';
import { uniqueName } from '../helpers/names.js';

const PERIOD = 10;
const { values: o } = parseArgs({
  options: {
    lab: { type: 'string' },
    span: { type: 'string', default: '2' },
    out: { type: 'string', default: join(packageRoot, 'docs', 'report.png') },
    width: { type: 'string', default: '1000' },
  },
});
const CLI = join(packageRoot, 'dist', 'src', 'cli', 'main.js');
const out = resolve(o.out) as `${string}.png`;
const width = Number(o.width);
const own = o.lab === undefined ? uniqueName('s') : undefined;
const lab = o.lab ?? own!;
const dir = await mkdtemp(join(tmpdir(), 'vc-shot-'));

try {
  if (own) {
    process.stdout.write(`bringing up lab ${own} (2 sites x 2 hosts, 4 guests)\n`);
    await labUp({ name: own, sites: 2, hostsPerSite: 2, delayMs: 10, rateMbit: 1000, periodSeconds: PERIOD });
    await startViewGuests(own, 20);
    await sleep(msToNextBoundary(Date.now(), PERIOD) + Number(o.span) * PERIOD * 1000 + 1500);
  }
  const html = join(dir, 'report.html');
  process.stdout.write(await run(process.execPath, [CLI, 'report', '--lab', lab, '--span', o.span, '--wait', '5s', '--html', html]));
  const browser = await launchChromium();
  let height = 0;
  try {
    const { page, errors } = await openFile(browser, html, width);
    if (errors.length) throw new Error(`the page reported errors: ${errors.join('; ')}`);
    // Header, cards, matrix and groups: what the report is about, in a picture small enough for the docs.
    height = await page.evaluate(() => Math.ceil(document.querySelector('#groups')!.getBoundingClientRect().bottom + window.scrollY + 12));
    await page.screenshot({ path: out, clip: { x: 0, y: 0, width, height } });
  } finally {
    await browser.close();
  }
  process.stdout.write(`wrote ${out}: ${width} x ${height} px, ${Math.round((await stat(out)).size / 1024)} KiB\n`);
} finally {
  if (own) await labDown(own);
  await rm(dir, { recursive: true, force: true });
}
