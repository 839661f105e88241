/**
 * `npm run gen`: write the files generated from the configuration schema
 * (src/config/generated.ts). `--check` writes nothing and exits 1 if one is
 * stale.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { packageRoot } from '../paths.js';
import { GENERATED } from './generated.js';

const check = process.argv.includes('--check');
for (const g of GENERATED) {
  const file = join(packageRoot, g.path);
  const want = g.render();
  let have: string | undefined;
  try {
    have = readFileSync(file, 'utf8');
  } catch {
    have = undefined;
  }
  if (have === want) {
    process.stdout.write(`${g.path}: up to date\n`);
  } else if (check) {
    process.stderr.write(`${g.path} is stale: run npm run gen\n`);
    process.exitCode = 1;
  } else {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, want);
    process.stdout.write(`${g.path}: written\n`);
  }
}
