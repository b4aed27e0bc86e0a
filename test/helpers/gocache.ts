/** Helpers of the shared build cache tests (test/integration/gocache*.test.ts). */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT } from './fairway.js';

/** The GOCACHEPROG program the setup step builds from tools/cacheprog. */
export const CACHEPROG = join(ROOT, '.tools', 'bin', 'fairway-cacheprog');

/** A program with a package of its own, so the cache holds more than the standard library. */
export async function writeTinyProgram(dir: string, greeting: string): Promise<void> {
  await mkdir(join(dir, 'greet'), { recursive: true });
  await writeFile(join(dir, 'go.mod'), 'module example.com/tiny\n\ngo 1.22\n');
  await writeFile(join(dir, 'greet', 'greet.go'), `package greet\n\nimport "strings"\n\nfunc Hello(n string) string { return strings.ToUpper("${greeting}, ") + n }\n`);
  await writeFile(join(dir, 'main.go'), 'package main\n\nimport (\n\t"fmt"\n\t"os"\n\n\t"example.com/tiny/greet"\n)\n\nfunc main() { fmt.Fprintln(os.Stdout, greet.Hello("fleet")) }\n');
}
