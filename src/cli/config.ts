import { Command } from 'commander';
import { stringify } from 'yaml';
import { configFile, loadSettings } from '../config/load.js';
import { redactConfig } from '../config/redact.js';
import { DEFAULT_CONFIG_FILE } from '../config/schema.js';
import { printJson } from './options.js';

export function configCommand(): Command {
  const config = new Command('config').description('the configuration file: check it');
  config
    .command('check')
    .description('validate a configuration and print the effective settings (defaults < file < environment), secrets redacted; exit 2 on errors')
    .argument('[file]', `the YAML file (default: $VIRT_COHORT_CONFIG, else ${DEFAULT_CONFIG_FILE} if it exists)`)
    .option('--json', 'print JSON')
    .action((file: string | undefined, o: { json?: boolean }) => {
      // Throws ConfigError (exit 2) listing every problem with its line.
      const loaded = loadSettings({ file: configFile(file) ?? false });
      const effective = redactConfig(loaded.config);
      if (o.json) return printJson({ file: loaded.file ?? null, overrides: loaded.overrides, config: effective });
      const head = [`# ${loaded.file ? `${loaded.file}: valid` : 'no configuration file: built-in defaults'}`];
      for (const ov of loaded.overrides) head.push(`# ${ov}`);
      process.stdout.write(`${head.join('\n')}\n${stringify(effective)}`);
    });
  return config;
}
