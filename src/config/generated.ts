import { stringify } from 'yaml';
import { commandsFor, flagName } from './flags.js';
import { DEFAULT_CONFIG_FILE } from './schema.js';
import { isGroup, SETTINGS, SETTINGS_TREE, shownDefault, type Setting, type SettingGroup } from './settings.js';

/**
 * The files written from the schema by `npm run gen` (src/config/gen.ts);
 * test/unit/settings.test.ts fails when a committed one differs.
 */
export const GENERATED: readonly { path: string; render: () => string }[] = [
  { path: 'src/config/default.yaml', render: defaultYaml },
  { path: 'docs/configuration-reference.md', render: referenceMarkdown },
];

const WIDTH = 88;
/** Joins words that a line break must not part ("flag --period"); a space in the output. */
const GLUE = '\u00a0';

function wrap(text: string, prefix: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ').filter(Boolean)) {
    if (line && prefix.length + line.length + 1 + word.length > WIDTH) {
      lines.push(prefix + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(prefix + line);
  return lines.map((l) => l.replaceAll(GLUE, ' '));
}

const yamlValue = (v: unknown) => stringify(v, { collectionStyle: 'flow' }).trimEnd();
const packagedKeys = () => SETTINGS.filter((s) => s.packaged !== undefined).map((s) => s.path);

/** The flag of a key, if a command takes one. */
const flagOf = (s: Setting) => (commandsFor(s.path).length ? flagName(s.path) : undefined);

function yamlComment(s: Setting): string {
  const parts = [s.description];
  if (s.packaged !== undefined) parts.push(`Built-in default ${shownDefault(s)}; ${yamlValue(s.packaged)} here.`);
  const set = [s.env ? `env${GLUE}${s.env}` : '', flagOf(s) ? `flag${GLUE}${flagOf(s)}` : ''].filter(Boolean).join(', ');
  if (set) parts.push(`${set[0]!.toUpperCase()}${set.slice(1)}.`);
  return parts.join(' ');
}

/** The lines of a mapping's entries; inside a commented-out mapping (`commented`), the keys are written as they would be uncommented. */
function yamlEntries(g: SettingGroup, indent: string, commented: boolean): string[] {
  const out: string[] = [];
  for (const e of g.entries) {
    if (isGroup(e)) {
      out.push(...wrap(e.description, `${indent}# `));
      if (e.optional && !commented) out.push(`${indent}# ${e.key}:`, ...yamlEntries(e, '  ', true).map((l) => `${indent}# ${l}`));
      else out.push(`${indent}${e.key}:`, ...yamlEntries(e, `${indent}  `, commented));
      continue;
    }
    out.push(...wrap(yamlComment(e), `${indent}# `));
    if (e.example !== undefined) out.push(`${indent}${commented ? '' : '# '}${e.key}: ${yamlValue(e.example)}`);
    else out.push(`${indent}${e.key}: ${yamlValue(e.packaged ?? e.default)}`);
  }
  return out;
}

/** src/config/default.yaml: every key with its description, shipped as /etc/virt-cohort/config.yaml. */
export function defaultYaml(): string {
  const head = [
    `# virt-cohort configuration: ${DEFAULT_CONFIG_FILE}`,
    '#',
    ...wrap(
      `Every key is shown with its built-in default, except ${packagedKeys().join(' and ')}, which this packaged file sets (the built-in default is noted there). ` +
        'Keys without a default, or with one that depends on the machine, are shown commented out with an example.',
      '# ',
    ),
    '# Remove a key to get its default. Unknown keys are refused.',
    '# Precedence: built-in defaults < this file < environment variables < command-line flags.',
    `# Check a change before restarting:   virt-cohort config check ${DEFAULT_CONFIG_FILE}`,
  ];
  const sections = SETTINGS_TREE.entries.filter(isGroup).map((s) => ['', ...wrap(s.description, '# '), `${s.key}:`, ...yamlEntries(s, '  ', false)].join('\n'));
  // Top-level lists (rules): shown commented out, one entry a line, since none is set by default.
  const lists = SETTINGS_TREE.entries
    .filter((e): e is Setting => !isGroup(e))
    .map((e) => ['', ...wrap(yamlComment(e), '# '), `# ${e.key}:`, ...((e.example as unknown[] | undefined) ?? []).map((x) => `#   - ${yamlValue(x)}`)].join('\n'));
  return `${head.join('\n')}\n${[...sections, ...lists].join('\n')}\n`;
}

const cell = (t: string) => t.replace(/[|*]/g, (c) => `\\${c}`);

function defaultCell(s: Setting): string {
  const shown = shownDefault(s);
  return s.defaultText || shown === 'none' ? shown : `\`${shown}\``;
}

function referenceRows(g: SettingGroup): string[] {
  return g.entries.flatMap((e) => {
    if (isGroup(e)) return [`| \`${e.path}\` | ${e.optional ? 'none' : ''} | | | ${cell(e.description)} A mapping of the keys below. |`, ...referenceRows(e)];
    const flag = flagOf(e);
    return [`| \`${e.path}\` | ${defaultCell(e)} | ${e.env ? `\`${e.env}\`` : ''} | ${flag ? `\`${flag}\` (${commandsFor(e.path).join(', ')})` : ''} | ${cell(e.description)} |`];
  });
}

/** docs/configuration-reference.md: the table of every key. */
export function referenceMarkdown(): string {
  const out = [
    '# Configuration reference',
    '',
    '<!-- Written by `npm run gen` from src/config/schema.ts: edit the schema, not this file. -->',
    '',
    `Every key of the configuration file (\`${DEFAULT_CONFIG_FILE}\`; the packaged one is`,
    '[src/config/default.yaml](../src/config/default.yaml)), with its built-in default, and the environment',
    'variable and command-line flag (with the commands that take it) that set it.',
    '',
    '- Precedence: built-in defaults < the file < environment variables < flags.',
    '- Unknown keys are refused; `virt-cohort config check [FILE]` validates a file and prints the effective settings.',
    '- Durations: `30s`, `5m`, `1h`, `500ms`, or a number of seconds.',
    `- The packaged file sets ${packagedKeys()
      .map((p) => `\`${p}\``)
      .join(' and ')} (see there); every other key it shows has its built-in default.`,
  ];
  for (const s of SETTINGS_TREE.entries.filter(isGroup)) {
    out.push('', `## ${s.key}`, '', s.description, '', '| Key | Default | Environment | Flag | Description |', '| --- | --- | --- | --- | --- |', ...referenceRows(s));
  }
  for (const e of SETTINGS_TREE.entries.filter((x): x is Setting => !isGroup(x))) {
    out.push('', `## ${e.key}`, '', e.description, '', 'For example:', '', '```yaml', `${e.key}:`, ...((e.example as unknown[] | undefined) ?? []).map((x) => `  - ${yamlValue(x)}`), '```');
  }
  return `${out.join('\n')}\n`;
}
