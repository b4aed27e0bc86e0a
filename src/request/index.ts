export type { PluginRequest, BuildRequest, Replacement, ResolvedPlugin, ResolvedSpec } from './types.js';
export { SpecError, parseBuildRequest, parsePluginArg, CADDY_MODULE } from './parse.js';
export { modulePathError, classifyVersionQuery, isExactVersion, isLocalPath, CADDY_VERSION_PATTERN, MODULE_PATH_PATTERN, VERSION_QUERY_PATTERN, whole } from './grammar.js';
export { admitted, isPseudoVersion, recipeVersionKind, recipeVersionPattern } from './range.js';
export { MAX_TEST_CONFIG, testConfigError, type TestConfig } from './recipe.js';
export { PlatformSet, ARM_VERSIONS, hostPlatform, type Platform } from './platform.js';
export { BUILD_FLAGS, canonicalJson, canonicalRequest, canonicalSpec, cacheKey, comparePlugins, isCacheKey, rebuildKey } from './key.js';
export { checkResolvedSpec, requestMismatch, storedRequest } from './resolved.js';
