import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { packageRoot } from '../../src/paths.js';

/**
 * The layers of src/, lowest first: a module may import from its own layer and
 * the layers below, never from one above. The data flows sensor → agent →
 * collector → analysis → placement → manager, but the agent writes through the
 * collector's schema (keys, report, Store), so in the import graph the
 * collector sits below the agent. The sensor and libvirt are the adapters the
 * agent and the manager drive; the report, doctor and demo views sit with the
 * commands; record and replay run the manager's decisions and draw with the report; the lab drives everything, and the CLI sits on top of all.
 */
const LAYERS: readonly (readonly [layer: string, entries: readonly string[]])[] = [
  ['util', ['util', 'paths.ts']],
  ['config', ['config']],
  ['adapters', ['sensor', 'libvirt']],
  ['collector', ['collector']],
  ['metrics', ['metrics']],
  ['agent', ['agent']],
  ['analysis', ['analysis']],
  ['placement', ['placement']],
  ['manager', ['manager']],
  ['views', ['report', 'doctor', 'demo']],
  ['replay', ['replay']],
  ['lab', ['lab']],
  ['cli', ['cli']],
];

const SRC = join(packageRoot, 'src');
const rank = new Map(LAYERS.flatMap(([layer, entries], i) => entries.map((e) => [e, { layer, i }] as const)));

function layerOf(file: string): { layer: string; i: number } | undefined {
  return rank.get(relative(SRC, file).split('/')[0]!);
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every module a file names: import and export ... from, import type, and import() of a literal (`dynamic`). */
function imports(text: string): { spec: string; dynamic: boolean }[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  return [...code.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"`;]*?\sfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm)].map((m) => ({
    spec: m[1] ?? m[2] ?? m[3]!,
    dynamic: m[2] !== undefined,
  }));
}

test('every module of src/ sits in a layer', () => {
  const unplaced = sources(SRC)
    .filter((f) => !layerOf(f))
    .map((f) => relative(packageRoot, f));
  assert.deepEqual(unplaced, [], 'add its folder to LAYERS in test/unit/layers.test.ts');
});

test('no module imports from a layer above its own', () => {
  const backward: string[] = [];
  for (const file of sources(SRC)) {
    const from = layerOf(file);
    if (!from) continue;
    for (const { spec } of imports(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
      const to = layerOf(target);
      if (to && to.i > from.i) {
        backward.push(`${relative(packageRoot, file)} imports ${relative(packageRoot, target)}: ${from.layer} may not import from ${to.layer}, a higher layer`);
      }
    }
  }
  assert.deepEqual(backward, [], `layers, lowest first: ${LAYERS.map(([l, e]) => `${l} (${e.join(', ')})`).join(' < ')}`);
});

test('the import parser sees every form of import', () => {
  const text =
    `import { a } from './a.js';\nimport type { B } from "../b.js";\nexport { c } from './c.js';\nexport * from './d.js';\n` +
    `const e = await import('./e.js');\nimport './f.js';\nimport {\n  g,\n  h,\n} from './g.js';\n// import { x } from './commented.js';\n/* import { y } from './y.js'; */`;
  assert.deepEqual(
    imports(text).map((i) => `${i.spec}${i.dynamic ? ' (dynamic)' : ''}`),
    ['./a.js', '../b.js', './c.js', './d.js', './e.js (dynamic)', './f.js', './g.js'],
  );
});

test('the commands load the lab only when asked: no static import from src/cli/main.ts reaches what the package leaves out', () => {
  // What src/package/build.sh leaves out, as it lists it.
  const build = readFileSync(join(SRC, 'package', 'build.sh'), 'utf8');
  const labOnly = /^LAB_ONLY="([^"]+)"$/m.exec(build)?.[1]?.split(' ');
  assert.ok(labOnly?.length, 'src/package/build.sh sets LAB_ONLY="..."');
  // The compiled program: the imports that load at run time (tsc drops the ones only types use).
  const DIST = join(packageRoot, 'dist', 'src');
  const left = (file: string) => labOnly.some((p) => relative(DIST, file) === p || relative(DIST, file).startsWith(`${p}/`));
  const seen = new Set<string>();
  const reached: string[] = [];
  const visit = (file: string, via: string[]) => {
    if (seen.has(file)) return;
    seen.add(file);
    if (left(file)) return void reached.push([...via, file].map((f) => relative(DIST, f)).join(' → '));
    for (const { spec, dynamic } of imports(readFileSync(file, 'utf8'))) {
      if (!dynamic && spec.startsWith('.')) visit(resolve(dirname(file), spec), [...via, file]);
    }
  };
  visit(join(DIST, 'cli', 'main.js'), []);
  assert.deepEqual(reached, [], 'load it with import() behind labInstalled() (src/cli/labs.ts)');
  assert.ok(seen.size > 50, `the walk saw the program (${seen.size} modules)`);
});
