/** Real paths for comparing where files are (src/sandbox sandboxVisibleParent, the secret checks of src/main). */
import { realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * The real path of `path` (every symlink resolved, as the kernel and bubblewrap resolve a bind's
 * source); for a path that does not exist yet (a key about to be created), the real path of its
 * deepest existing ancestor joined with the rest. A part that cannot be resolved (no permission)
 * stays as written.
 */
export function realPathOf(path: string): string {
  let dir = resolve(path);
  const rest: string[] = [];
  for (;;) {
    try {
      return join(realpathSync.native(dir), ...rest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return join(dir, ...rest);
    }
    const up = dirname(dir);
    if (up === dir) return join(dir, ...rest);
    rest.unshift(basename(dir));
    dir = up;
  }
}

/** Whether `path` is `root` or lies under it (both absolute, normalised). */
export function isUnder(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`);
}
