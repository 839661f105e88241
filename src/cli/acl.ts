import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { aclLine, aclUsers } from '../collector/acl.js';
import { UserError } from '../util/errors.js';

/** The user's password from DIR/NAME.password, made (random, mode 0600) when there is none: running the command again keeps them. */
async function password(dir: string, user: string): Promise<string> {
  const file = join(dir, `${user}.password`);
  const old = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
  if (old !== undefined) {
    const p = old.replace(/\r?\n$/, '');
    if (p.length < 16) throw new UserError(`${file} holds a password of ${p.length} characters: use at least 16, or delete the file to have one made`);
    return p;
  }
  const made = randomBytes(24).toString('base64url');
  await writeFile(file, `${made}\n`, { mode: 0o600, flag: 'wx' });
  return made;
}

export function aclCommand(): Command {
  return new Command('acl')
    .description("Redis 7 ACL users by role, as an aclfile on stdout: one agent per host (writes only its own host's keys), the manager, and a read-only user for the commands")
    .requiredOption('--hosts <names>', "every agent's host (agent.host), comma-separated")
    .requiredOption('--secrets <dir>', "where each user's password is kept (NAME.password, mode 0600; made when missing, kept when present)")
    .option('--agents-trim', "agents delete old periods (agent.retention > 0): lets each agent delete, not write, other hosts' old reports")
    .action(async (o) => {
      const users = aclUsers({
        hosts: String(o.hosts)
          .split(',')
          .map((h) => h.trim())
          .filter(Boolean),
        agentsTrim: Boolean(o.agentsTrim),
      });
      await mkdir(o.secrets, { recursive: true, mode: 0o700 });
      // Redis' aclfile takes no comment line: the advice goes to stderr.
      const lines: string[] = [];
      for (const u of users) lines.push(aclLine(u, await password(o.secrets, u.name)));
      process.stdout.write(`${lines.join('\n')}\n`);
      process.stderr.write(
        [
          `virt-cohort acl: ${users.length} users; passwords in ${o.secrets}/ (the file above holds only their SHA-256).`,
          'Add these lines to the aclfile named in redis.conf, beside your own admin user and "user default off", then: redis-cli ACL LOAD.',
          `On each host: redis.username: ${users[0]!.name} (its own), redis.passwordFile: a root-only copy of its .password file;`,
          "the manager (and migrate, host drain): vc-manager; people's commands: vc-reader. See docs/security.md.",
          '',
        ].join('\n'),
      );
    });
}
