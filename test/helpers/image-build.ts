/**
 * `node --import tsx test/helpers/image-build.ts '<BuildImageOptions as JSON>'`: builds one
 * image in this fresh process and prints its digests and the process's peak RSS as JSON.
 * Used by the image tests to check determinism across processes and that the binary streams.
 */
import { buildImage, type BuildImageOptions } from '../../src/image/index.js';

const opts = JSON.parse(process.argv[2] ?? '{}') as BuildImageOptions;
const im = await buildImage(opts);
process.stdout.write(
  JSON.stringify({
    manifestDigest: im.manifestDigest,
    configDigest: im.configDescriptor.digest,
    layers: im.layers.map((l) => ({ digest: l.digest, diffId: l.diffId, size: l.size })),
    maxRssKb: process.resourceUsage().maxRSS,
  }),
);
