import { pathToFileURL } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

/** Debian's Chromium (src/setup.sh installs it); VIRT_COHORT_CHROMIUM points elsewhere. puppeteer-core downloads no browser. */
export const CHROMIUM = process.env.VIRT_COHORT_CHROMIUM ?? '/usr/bin/chromium';

/** Headless Chromium; as root it runs only without its sandbox. */
export function launchChromium(): Promise<Browser> {
  return puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
}

export interface OpenedPage {
  page: Page;
  /** Console messages of type error, uncaught page errors and failed requests, in order. */
  errors: string[];
}

/** Opens a local file at `width` px, listening for errors from the first byte on. */
export async function openFile(browser: Browser, file: string, width: number, height = 900): Promise<OpenedPage> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e instanceof Error ? e.message : String(e)}`));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} (${r.failure()?.errorText ?? '?'})`));
  await page.setViewport({ width, height, deviceScaleFactor: 1 });
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  return { page, errors };
}

export interface Overflow {
  scrollWidth: number;
  /** Elements whose right edge lies beyond the width (page coordinates), described as tag#id.class. */
  beyond: { element: string; right: number }[];
}

/** What sticks out to the right of `width` px: the document's scroll width, and every element past it. */
export function overflow(page: Page, width: number): Promise<Overflow> {
  return page.evaluate((w) => {
    const describe = (e: Element) => {
      const id = e.id ? `#${e.id}` : '';
      const cls = typeof e.className === 'string' && e.className ? `.${e.className.split(/\s+/).join('.')}` : '';
      const section = e.closest('section[id]');
      return `${e.tagName.toLowerCase()}${id}${cls}${section && section !== e ? ` in section#${section.id}` : ''}`;
    };
    const beyond: { element: string; right: number }[] = [];
    for (const e of Array.from(document.querySelectorAll('body *'))) {
      const r = e.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      const right = r.right + window.scrollX;
      if (right > w + 0.5) beyond.push({ element: describe(e), right: Math.round(right) });
    }
    return { scrollWidth: document.documentElement.scrollWidth, beyond };
  }, width);
}
