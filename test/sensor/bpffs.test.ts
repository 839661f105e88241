import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';
import { run } from '../../src/util/exec.js';

// What a fresh machine sees: no BPF filesystem at /sys/fs/bpf. Each case runs
// in a private mount namespace with it unmounted, so this machine's is untouched.
const BPFFS = join(packageRoot, 'dist', 'src', 'sensor', 'bpffs.js');

function inFreshNamespace(script: string, user?: number): Promise<string> {
  const node = `${process.execPath} --input-type=module -e '${script.replaceAll("'", "'\\''")}'`;
  const as = user === undefined ? node : `setpriv --reuid=${user} --regid=${user} --clear-groups ${node}`;
  return run('unshare', [
    '--mount',
    '--propagation',
    'private',
    'sh',
    '-c',
    `while grep -q " /sys/fs/bpf bpf " /proc/self/mounts; do umount /sys/fs/bpf; done; ${as} 2>&1; echo "mounts: $(grep -c " /sys/fs/bpf bpf " /proc/self/mounts)"`,
  ]);
}

describe('bpffs on a machine that has none', () => {
  it('as root, the sensor mounts it once and says so', async () => {
    const out = await inFreshNamespace(`import { ensureBpffs } from '${BPFFS}'; console.log('first', await ensureBpffs()); console.log('second', await ensureBpffs());`);
    assert.match(out, /first true/);
    assert.match(out, /mounted the BPF filesystem at \/sys\/fs\/bpf/);
    assert.match(out, /second false/);
    assert.match(out, /mounts: 1$/m, 'mounted once, not stacked');
  });

  it('without the right to mount it, the error says why and what to type', async () => {
    const out = await inFreshNamespace(`import { ensureBpffs } from '${BPFFS}'; try { await ensureBpffs(); console.log('no error'); } catch (e) { console.log(e.name, e.message); }`, 65534);
    assert.match(out, /BpffsError no BPF filesystem at \/sys\/fs\/bpf \(not root, so it cannot be mounted here\): mount it as root: mount -t bpf bpf \/sys\/fs\/bpf/);
    assert.match(out, /mounts: 0$/m);
  });
});
